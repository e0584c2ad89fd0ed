//! How values cross the wire: a [`Codec`] turns a value into bytes and back, and every stored
//! record carries the binding's instance id in front of those bytes.

use genreg::InstanceId;
use serde::Serialize;
use serde::de::DeserializeOwned;

/// Turns values into the bytes etcd stores, and back. Chosen per registry
/// ([`EtcdRegistry::connect_with`](crate::EtcdRegistry::connect_with)); every process sharing a
/// registry must use the same one.
pub trait Codec<V>: Send + Sync + 'static {
    /// The bytes that stand for `value`.
    fn encode(&self, value: &V) -> Result<Vec<u8>, String>;
    /// The value that `bytes` stand for.
    fn decode(&self, bytes: &[u8]) -> Result<V, String>;
}

/// JSON through serde: readable with `etcdctl get`, any `Serialize + DeserializeOwned` value.
/// The default codec.
#[derive(Clone, Copy, Debug, Default)]
pub struct Json;

impl<V: Serialize + DeserializeOwned> Codec<V> for Json {
    fn encode(&self, value: &V) -> Result<Vec<u8>, String> {
        serde_json::to_vec(value).map_err(|e| e.to_string())
    }
    fn decode(&self, bytes: &[u8]) -> Result<V, String> {
        serde_json::from_slice(bytes).map_err(|e| e.to_string())
    }
}

/// The value is the bytes themselves (`Vec<u8>`): for callers with a format of their own.
#[derive(Clone, Copy, Debug, Default)]
pub struct Bytes;

impl Codec<Vec<u8>> for Bytes {
    fn encode(&self, value: &Vec<u8>) -> Result<Vec<u8>, String> {
        Ok(value.clone())
    }
    fn decode(&self, bytes: &[u8]) -> Result<Vec<u8>, String> {
        Ok(bytes.to_vec())
    }
}

/// The first bytes of every record: a format mark, so that a key written by something else is
/// reported as undecodable rather than misread.
const MARK: &[u8; 4] = b"gr1\0";

/// A stored record, parsed: who registered it, its metadata (JSON, empty for none) and the
/// codec's bytes.
pub(crate) struct Record<'a> {
    pub(crate) instance: InstanceId,
    pub(crate) metadata: &'a [u8],
    pub(crate) payload: &'a [u8],
}

/// A stored record: [`MARK`], the instance id (8 bytes, big-endian), a write id (8 random
/// bytes: no two writes store the same record, so a retry recognises its own write by
/// comparing bytes, and a compare of the whole value pins one write), the metadata's length
/// (4 bytes, big-endian) and the metadata, then the codec's bytes.
pub(crate) fn record(instance: InstanceId, metadata: &[u8], payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(MARK.len() + 20 + metadata.len() + payload.len());
    out.extend_from_slice(MARK);
    out.extend_from_slice(&instance.as_raw().to_be_bytes());
    out.extend_from_slice(&random_u64().to_be_bytes());
    out.extend_from_slice(&(metadata.len() as u32).to_be_bytes());
    out.extend_from_slice(metadata);
    out.extend_from_slice(payload);
    out
}

/// Splits a stored record into its parts.
pub(crate) fn parse(bytes: &[u8]) -> Result<Record<'_>, String> {
    let short = || format!("a genreg record cut short ({} bytes)", bytes.len());
    let rest = bytes
        .strip_prefix(MARK.as_slice())
        .ok_or_else(|| "not a genreg record (no format mark)".to_string())?;
    let (id, rest) = rest.split_at_checked(8).ok_or_else(short)?;
    let (_write, rest) = rest.split_at_checked(8).ok_or_else(short)?;
    let (len, rest) = rest.split_at_checked(4).ok_or_else(short)?;
    let len = u32::from_be_bytes(len.try_into().expect("4 bytes")) as usize;
    let (metadata, payload) = rest.split_at_checked(len).ok_or_else(short)?;
    Ok(Record {
        instance: InstanceId::from_raw(u64::from_be_bytes(id.try_into().expect("8 bytes"))),
        metadata,
        payload,
    })
}

/// 64 bits unique across processes with overwhelming probability: the standard library's
/// randomly keyed hasher (fresh keys per process, varied per call) over a process-wide counter
/// and the process id.
pub(crate) fn random_u64() -> u64 {
    use std::collections::hash_map::RandomState;
    use std::hash::{BuildHasher, Hasher};
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut h = RandomState::new().build_hasher();
    h.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    h.write_u32(std::process::id());
    h.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_and_foreign_bytes_are_refused() {
        let r = record(InstanceId::from_raw(0x0102_0304_0506_0708), b"[1]", b"{}");
        let p = parse(&r).unwrap();
        assert_eq!(p.instance.as_raw(), 0x0102_0304_0506_0708);
        assert_eq!((p.metadata, p.payload), (&b"[1]"[..], &b"{}"[..]));
        let r = record(InstanceId::from_raw(1), b"", b"");
        assert_eq!(parse(&r).unwrap().metadata, b"");
        assert!(parse(b"hello").is_err());
        assert!(parse(b"gr1\0abc").is_err());
        // A metadata length past the end is refused, not read out of bounds.
        let mut r = record(InstanceId::from_raw(1), b"ab", b"");
        r.truncate(r.len() - 1);
        assert!(parse(&r).is_err());
        // Two writes of the same thing are different records.
        let i = InstanceId::from_raw(5);
        assert_ne!(record(i, b"", b"x"), record(i, b"", b"x"));
    }
}
