//! What a valid name is.
//!
//! A name is a non-empty UTF-8 string of at most [`MAX_NAME_LEN`] bytes without control
//! characters (`U+0000..=U+001F`, `U+007F..=U+009F`). Anything else is refused with
//! [`Error::InvalidName`](crate::Error::InvalidName); names are never truncated or normalised,
//! so the name you look up is byte for byte the name that was registered.

use std::fmt;

/// The longest name accepted, in bytes (UTF-8).
pub const MAX_NAME_LEN: usize = 255;

/// Why a name was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum InvalidNameReason {
    /// The name is the empty string.
    Empty,
    /// The name is longer than [`MAX_NAME_LEN`] bytes.
    TooLong {
        /// Its length in bytes.
        len: usize,
    },
    /// The name contains a control character.
    ControlChar {
        /// Byte offset of the first control character.
        at: usize,
    },
}

impl fmt::Display for InvalidNameReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            InvalidNameReason::Empty => f.write_str("names must not be empty"),
            InvalidNameReason::TooLong { len } => {
                write!(f, "it is {len} bytes long; the limit is {MAX_NAME_LEN}")
            }
            InvalidNameReason::ControlChar { at } => {
                write!(f, "it contains a control character at byte {at}")
            }
        }
    }
}

/// Checks a name against the rules above.
pub(crate) fn validate(name: &str) -> Result<(), InvalidNameReason> {
    if name.is_empty() {
        return Err(InvalidNameReason::Empty);
    }
    if name.len() > MAX_NAME_LEN {
        return Err(InvalidNameReason::TooLong { len: name.len() });
    }
    // Fast path: printable ASCII (0x20..=0x7e), checked without decoding UTF-8.
    if name.bytes().all(|b| b.wrapping_sub(0x20) < 0x5f) {
        return Ok(());
    }
    if let Some((at, _)) = name.char_indices().find(|(_, c)| c.is_control()) {
        return Err(InvalidNameReason::ControlChar { at });
    }
    Ok(())
}

/// Shortens a name for an error message: the error keeps the whole name, the message does not
/// need 64 KiB of it.
pub(crate) fn for_display(name: &str) -> impl fmt::Display + '_ {
    struct Short<'a>(&'a str);
    impl fmt::Display for Short<'_> {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            const SHOWN: usize = 64;
            if self.0.chars().count() <= SHOWN {
                write!(f, "{:?}", self.0)
            } else {
                let head: String = self.0.chars().take(SHOWN).collect();
                write!(f, "{head:?}... ({} bytes)", self.0.len())
            }
        }
    }
    Short(name)
}
