//! [`Metadata`]: what an entry says about itself (kind, capabilities, labels), validated once.

use std::fmt;

use crate::name::{InvalidNameReason, for_display};

/// The longest kind, capability or label key, in bytes.
pub const MAX_IDENT_LEN: usize = 64;
/// The longest label value, in bytes (UTF-8).
pub const MAX_LABEL_VALUE_LEN: usize = 256;
/// The most capabilities one entry may carry (after removing duplicates).
pub const MAX_CAPABILITIES: usize = 64;
/// The most labels one entry may carry.
pub const MAX_LABELS: usize = 32;
/// The most bytes of text (kind, capabilities, label keys and values together) one entry's
/// metadata may hold.
pub const MAX_METADATA_BYTES: usize = 4096;

/// What an entry says about itself: a kind (MARSYS's agent type), a set of capabilities and
/// labels (key → value). Discovery queries ([`Registry::find`](crate::Registry::find)) select
/// entries by them.
///
/// Built and validated by [`Metadata::builder`]: a `Metadata` that exists is valid, so
/// registering one cannot fail because of it. Capabilities are a set (duplicates are
/// dropped) and are kept sorted, as are labels by key. Cheap to share: the registry keeps it
/// in an `Arc`, and every query result hands out that `Arc`.
///
/// # Rules
/// - A kind, a capability or a label key is an *identifier*: 1 to [`MAX_IDENT_LEN`] bytes of
///   ASCII letters, digits and `_ - . : /`, compared exactly (case-sensitive).
/// - A label value is any UTF-8 string of at most [`MAX_LABEL_VALUE_LEN`] bytes without
///   control characters (it may be empty); a key has at most one value.
/// - At most [`MAX_CAPABILITIES`] capabilities, [`MAX_LABELS`] labels and
///   [`MAX_METADATA_BYTES`] bytes of text in all.
#[derive(Clone, PartialEq, Eq, Hash, Default)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(try_from = "MetadataBuilder"))]
#[cfg_attr(feature = "serde", serde(into = "MetadataBuilder"))]
pub struct Metadata {
    kind: Option<Box<str>>,
    /// Sorted, without duplicates.
    capabilities: Box<[Box<str>]>,
    /// Sorted by key, keys unique.
    labels: Box<[(Box<str>, Box<str>)]>,
}

impl Metadata {
    /// Empty metadata: no kind, no capability, no label. An entry registered with it is
    /// still discoverable (by name prefix, or by a query with no condition).
    pub fn new() -> Metadata {
        Metadata::default()
    }

    /// A builder, to set the kind, capabilities and labels.
    pub fn builder() -> MetadataBuilder {
        MetadataBuilder::default()
    }

    /// A builder that starts from this metadata (to change some of it).
    pub fn to_builder(&self) -> MetadataBuilder {
        MetadataBuilder::from(self.clone())
    }

    /// The kind, if one was given.
    pub fn kind(&self) -> Option<&str> {
        self.kind.as_deref()
    }

    /// The capabilities, sorted.
    pub fn capabilities(&self) -> impl ExactSizeIterator<Item = &str> + '_ {
        self.capabilities.iter().map(|c| &**c)
    }

    /// Whether it lists this capability.
    pub fn has_capability(&self, capability: &str) -> bool {
        self.capabilities
            .binary_search_by(|c| (**c).cmp(capability))
            .is_ok()
    }

    /// The labels, sorted by key.
    pub fn labels(&self) -> impl ExactSizeIterator<Item = (&str, &str)> + '_ {
        self.labels.iter().map(|(k, v)| (&**k, &**v))
    }

    /// The value of the label `key`, if set.
    pub fn label(&self, key: &str) -> Option<&str> {
        self.labels
            .binary_search_by(|(k, _)| (**k).cmp(key))
            .ok()
            .map(|i| &*self.labels[i].1)
    }

    /// Whether nothing is set.
    pub fn is_empty(&self) -> bool {
        self.kind.is_none() && self.capabilities.is_empty() && self.labels.is_empty()
    }
}

impl fmt::Debug for Metadata {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut s = f.debug_struct("Metadata");
        if let Some(kind) = &self.kind {
            s.field("kind", kind);
        }
        if !self.capabilities.is_empty() {
            s.field("capabilities", &self.capabilities);
        }
        if !self.labels.is_empty() {
            let labels: Vec<String> = self.labels().map(|(k, v)| format!("{k}={v}")).collect();
            s.field("labels", &labels);
        }
        s.finish()
    }
}

/// Builds [`Metadata`]; [`build`](Self::build) validates it (see the rules on [`Metadata`]).
///
/// ```
/// let meta = genreg::Metadata::builder()
///     .kind("translator")
///     .capabilities(["translation", "localization"])
///     .label("region", "eu")
///     .build()?;
/// assert!(meta.has_capability("translation"));
/// # Ok::<(), genreg::MetadataError>(())
/// ```
#[derive(Clone, Default, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(deny_unknown_fields))]
pub struct MetadataBuilder {
    #[cfg_attr(feature = "serde", serde(default))]
    kind: Option<String>,
    #[cfg_attr(feature = "serde", serde(default))]
    capabilities: Vec<String>,
    #[cfg_attr(feature = "serde", serde(default))]
    labels: Vec<(String, String)>,
}

impl MetadataBuilder {
    /// Sets the kind (replacing any set before).
    pub fn kind(mut self, kind: impl Into<String>) -> Self {
        self.kind = Some(kind.into());
        self
    }

    /// Removes the kind.
    pub fn no_kind(mut self) -> Self {
        self.kind = None;
        self
    }

    /// Adds a capability.
    pub fn capability(mut self, capability: impl Into<String>) -> Self {
        self.capabilities.push(capability.into());
        self
    }

    /// Adds capabilities.
    pub fn capabilities<I: IntoIterator<Item = S>, S: Into<String>>(mut self, caps: I) -> Self {
        self.capabilities.extend(caps.into_iter().map(Into::into));
        self
    }

    /// Removes a capability (if present).
    pub fn without_capability(mut self, capability: &str) -> Self {
        self.capabilities.retain(|c| c != capability);
        self
    }

    /// Sets a label. Setting one key twice with different values is refused by
    /// [`build`](Self::build) ([`MetadataError::DuplicateLabel`]); use
    /// [`without_label`](Self::without_label) first to change one.
    pub fn label(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.labels.push((key.into(), value.into()));
        self
    }

    /// Removes a label (if present).
    pub fn without_label(mut self, key: &str) -> Self {
        self.labels.retain(|(k, _)| k != key);
        self
    }

    /// Validates and builds.
    pub fn build(self) -> Result<Metadata, MetadataError> {
        let mut bytes = 0;
        let kind = match self.kind {
            Some(k) => {
                ident(Field::Kind, &k)?;
                bytes += k.len();
                Some(k.into_boxed_str())
            }
            None => None,
        };
        let mut caps = self.capabilities;
        for c in &caps {
            ident(Field::Capability, c)?;
        }
        caps.sort_unstable();
        caps.dedup();
        if caps.len() > MAX_CAPABILITIES {
            return Err(MetadataError::TooManyCapabilities { count: caps.len() });
        }
        bytes += caps.iter().map(String::len).sum::<usize>();
        let mut labels = self.labels;
        for (k, v) in &labels {
            ident(Field::LabelKey, k)?;
            label_value(k, v)?;
            bytes += k.len() + v.len();
        }
        labels.sort_unstable();
        labels.dedup();
        if let Some(w) = labels.windows(2).find(|w| w[0].0 == w[1].0) {
            return Err(MetadataError::DuplicateLabel {
                key: w[0].0.clone(),
            });
        }
        if labels.len() > MAX_LABELS {
            return Err(MetadataError::TooManyLabels {
                count: labels.len(),
            });
        }
        if bytes > MAX_METADATA_BYTES {
            return Err(MetadataError::TooLarge { bytes });
        }
        Ok(Metadata {
            kind,
            capabilities: caps.into_iter().map(String::into_boxed_str).collect(),
            labels: labels
                .into_iter()
                .map(|(k, v)| (k.into_boxed_str(), v.into_boxed_str()))
                .collect(),
        })
    }
}

impl From<Metadata> for MetadataBuilder {
    fn from(m: Metadata) -> MetadataBuilder {
        MetadataBuilder {
            kind: m.kind.map(String::from),
            capabilities: m.capabilities.iter().map(|c| c.to_string()).collect(),
            labels: m
                .labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }
    }
}

impl TryFrom<MetadataBuilder> for Metadata {
    type Error = MetadataError;
    fn try_from(b: MetadataBuilder) -> Result<Metadata, MetadataError> {
        b.build()
    }
}

/// Which part of the metadata an identifier is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Field {
    /// The kind.
    Kind,
    /// A capability.
    Capability,
    /// A label key.
    LabelKey,
}

impl fmt::Display for Field {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Field::Kind => "kind",
            Field::Capability => "capability",
            Field::LabelKey => "label key",
        })
    }
}

/// Why metadata (or a query's term) was refused. The message names the offending text.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum MetadataError {
    /// A kind, capability or label key is empty.
    Empty {
        /// Which one.
        field: Field,
    },
    /// A kind, capability or label key is longer than [`MAX_IDENT_LEN`] bytes.
    TooLong {
        /// Which one.
        field: Field,
        /// Its length in bytes.
        len: usize,
    },
    /// A kind, capability or label key has a character outside ASCII letters, digits and
    /// `_ - . : /`.
    InvalidChar {
        /// Which one.
        field: Field,
        /// The text as given.
        value: String,
        /// Byte offset of the first character refused.
        at: usize,
    },
    /// A label value is longer than [`MAX_LABEL_VALUE_LEN`] bytes or has a control character.
    InvalidLabelValue {
        /// The label's key.
        key: String,
        /// Its length in bytes.
        len: usize,
        /// Byte offset of the first control character, if that is the problem.
        control_at: Option<usize>,
    },
    /// One label key with two different values.
    DuplicateLabel {
        /// The key.
        key: String,
    },
    /// More than [`MAX_CAPABILITIES`] distinct capabilities.
    TooManyCapabilities {
        /// How many were given.
        count: usize,
    },
    /// More than [`MAX_LABELS`] labels.
    TooManyLabels {
        /// How many were given.
        count: usize,
    },
    /// More than [`MAX_METADATA_BYTES`] bytes of text in all.
    TooLarge {
        /// How many bytes were given.
        bytes: usize,
    },
    /// A query's name prefix could not start any name (too long, or a control character).
    InvalidPrefix {
        /// The prefix as given.
        prefix: String,
        /// What is wrong with it.
        reason: InvalidNameReason,
    },
}

impl fmt::Display for MetadataError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MetadataError::Empty { field } => write!(f, "a {field} must not be empty"),
            MetadataError::TooLong { field, len } => write!(
                f,
                "a {field} is {len} bytes long; the limit is {MAX_IDENT_LEN}"
            ),
            MetadataError::InvalidChar { field, value, at } => write!(
                f,
                "{field} {value:?} has a character at byte {at} outside ASCII letters, digits \
                 and `_ - . : /`"
            ),
            MetadataError::InvalidLabelValue {
                key,
                len,
                control_at,
            } => match control_at {
                Some(at) => write!(
                    f,
                    "the value of label {key:?} has a control character at byte {at}"
                ),
                None => write!(
                    f,
                    "the value of label {key:?} is {len} bytes long; the limit is \
                     {MAX_LABEL_VALUE_LEN}"
                ),
            },
            MetadataError::DuplicateLabel { key } => {
                write!(f, "label {key:?} is given two different values")
            }
            MetadataError::TooManyCapabilities { count } => write!(
                f,
                "{count} capabilities given; the limit is {MAX_CAPABILITIES}"
            ),
            MetadataError::TooManyLabels { count } => {
                write!(f, "{count} labels given; the limit is {MAX_LABELS}")
            }
            MetadataError::InvalidPrefix { prefix, reason } => write!(
                f,
                "name prefix {} can match no name: {reason}",
                for_display(prefix)
            ),
            MetadataError::TooLarge { bytes } => write!(
                f,
                "the metadata holds {bytes} bytes of text; the limit is {MAX_METADATA_BYTES}"
            ),
        }
    }
}

impl std::error::Error for MetadataError {}

/// Checks an identifier (kind, capability, label key).
pub(crate) fn ident(field: Field, s: &str) -> Result<(), MetadataError> {
    if s.is_empty() {
        return Err(MetadataError::Empty { field });
    }
    if s.len() > MAX_IDENT_LEN {
        return Err(MetadataError::TooLong {
            field,
            len: s.len(),
        });
    }
    let ok = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b':' | b'/');
    match s.bytes().position(|b| !ok(b)) {
        Some(at) => Err(MetadataError::InvalidChar {
            field,
            value: s.to_owned(),
            at,
        }),
        None => Ok(()),
    }
}

fn label_value(key: &str, v: &str) -> Result<(), MetadataError> {
    let control_at = v
        .char_indices()
        .find(|(_, c)| c.is_control())
        .map(|(i, _)| i);
    if v.len() > MAX_LABEL_VALUE_LEN || control_at.is_some() {
        return Err(MetadataError::InvalidLabelValue {
            key: key.to_owned(),
            len: v.len(),
            control_at,
        });
    }
    Ok(())
}
