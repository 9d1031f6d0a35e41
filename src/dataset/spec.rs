//! The dataset spec: format, paths and options from one key table shared by the CLI, serde and
//! (later) the Ballista codec.

use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// One documented option key.
#[derive(Debug, Clone, Copy)]
pub struct Key {
    /// The key as written in a spec (`nav=16x16`).
    pub name: &'static str,
    /// Formats that take it (`*` for all).
    pub formats: &'static str,
    /// What it means.
    pub help: &'static str,
}

/// The one key table. Every option a dataset spec may carry is listed here; anything else is an
/// error that names the key.
pub const KEYS: &[Key] = &[
    Key {
        name: "format",
        formats: "*",
        help: "raw | npy | mib | blo | mrc | ser | hdf5 | app5 | empad | synthetic (default: detect from extension/magic bytes)",
    },
    Key { name: "nav", formats: "*", help: "scan shape, e.g. 16x16 or 4x16x16 (reinterprets the frames)" },
    Key { name: "sig", formats: "raw, synthetic", help: "frame shape, e.g. 128x128" },
    Key { name: "dtype", formats: "raw, synthetic", help: "numpy dtype name: uint8, uint16, >u2, float32, ..." },
    Key { name: "offset", formats: "raw", help: "bytes to skip at the start of the file" },
    Key {
        name: "sync_offset",
        formats: "raw, npy, mib, blo, mrc, ser, hdf5, app5, empad",
        help: "frames: positive skips frames, negative inserts blank frames",
    },
    Key {
        name: "dark",
        formats: "*",
        help: "dark frame to subtract (.npy of the frame shape); corrected data is float32",
    },
    Key { name: "gain", formats: "*", help: "gain map to multiply by (.npy of the frame shape)" },
    Key {
        name: "excluded",
        formats: "*",
        help: "hot/dead pixels 'y:x;y:x' or an .npy mask; replaced by the mean of their valid neighbours",
    },
    Key {
        name: "ds_path",
        formats: "hdf5, app5",
        help: "HDF5 dataset to read, e.g. /entry/data/data (default: found from the file's layout)",
    },
    Key { name: "seed", formats: "synthetic", help: "random seed of the synthetic generator" },
    Key {
        name: "io",
        formats: "raw, npy, mrc, hdf5, mib",
        help: "auto | pread | mmap (auto: zero-copy mmap when aligned and native-endian, else pread)",
    },
];

/// A serializable description of a dataset: enough to open it again anywhere the paths are visible.
///
/// ```
/// use tessera::dataset::DatasetSpec;
/// let spec = DatasetSpec::parse("/data/scan.raw,nav=16x16,sig=32x32,dtype=float32").unwrap();
/// assert_eq!(spec.path.as_deref(), Some("/data/scan.raw"));
/// assert_eq!(spec.get("nav"), Some("16x16"));
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DatasetSpec {
    /// `raw`, `npy`, `synthetic`, `memory`, or `None` to detect from the file.
    pub format: Option<String>,
    /// The file (absolute once registered; may be a glob for a file series).
    pub path: Option<String>,
    /// Options from [`KEYS`].
    pub options: BTreeMap<String, String>,
}

impl DatasetSpec {
    /// A spec for `path` with no options.
    pub fn file(path: impl Into<String>) -> Self {
        DatasetSpec { format: None, path: Some(path.into()), options: BTreeMap::new() }
    }
    /// A synthetic dataset spec.
    pub fn synthetic(nav: &str, sig: &str, dtype: &str) -> Self {
        let mut s = DatasetSpec { format: Some("synthetic".into()), path: None, options: BTreeMap::new() };
        s.options.insert("nav".into(), nav.into());
        s.options.insert("sig".into(), sig.into());
        s.options.insert("dtype".into(), dtype.into());
        s
    }
    /// Sets an option (checked against [`KEYS`]).
    pub fn with(mut self, key: &str, value: impl Into<String>) -> Result<Self> {
        self.set(key, value.into())?;
        Ok(self)
    }
    fn set(&mut self, key: &str, value: String) -> Result<()> {
        if key == "format" {
            self.format = Some(value);
            return Ok(());
        }
        if !KEYS.iter().any(|k| k.name == key) {
            let names: Vec<&str> = KEYS.iter().map(|k| k.name).collect();
            return Err(Error::Spec(format!("unknown key '{key}' (known keys: {})", names.join(", "))));
        }
        self.options.insert(key.to_string(), value);
        Ok(())
    }
    /// An option's value.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.options.get(key).map(|s| s.as_str())
    }

    /// Parses `PATH[,key=value]...`: PATH runs to the first `,key=`; keys come from [`KEYS`]. A spec
    /// that starts with `synthetic` (no path) is the synthetic generator.
    pub fn parse(text: &str) -> Result<Self> {
        let split = find_first_key(text);
        let (path, rest) = match split {
            Some(i) => (&text[..i], &text[i + 1..]),
            None => (text, ""),
        };
        let mut spec = DatasetSpec { format: None, path: None, options: BTreeMap::new() };
        if path == "synthetic" || path.is_empty() {
            spec.format = Some("synthetic".into());
        } else {
            spec.path = Some(path.to_string());
        }
        if !rest.is_empty() {
            for kv in rest.split(',') {
                let (k, v) =
                    kv.split_once('=').ok_or_else(|| Error::Spec(format!("'{kv}' in '{text}' is not key=value")))?;
                spec.set(k.trim(), v.trim().to_string())?;
            }
        }
        Ok(spec)
    }

    /// Makes the path absolute (against the current directory), resolving `..` and links when the
    /// file exists.
    pub fn absolutize(&mut self) -> Result<()> {
        if let Some(p) = &self.path {
            let pb = std::path::Path::new(p);
            if let Ok(canonical) = std::fs::canonicalize(pb) {
                self.path = Some(canonical.to_string_lossy().into_owned());
            } else if pb.is_relative() {
                // a glob or a file that does not exist (yet): make it absolute without resolving
                let cwd = std::env::current_dir().map_err(|e| Error::io(".", e))?;
                self.path = Some(cwd.join(pb).to_string_lossy().into_owned());
            }
        }
        Ok(())
    }
}

impl std::fmt::Display for DatasetSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut parts: Vec<String> = Vec::new();
        parts.push(self.path.clone().unwrap_or_else(|| "synthetic".into()));
        if let Some(fmt) = &self.format
            && self.path.is_some()
        {
            parts.push(format!("format={fmt}"));
        }
        parts.extend(self.options.iter().map(|(k, v)| format!("{k}={v}")));
        f.write_str(&parts.join(","))
    }
}

/// Byte index of the `,` that starts the first `,key=` in `text`.
fn find_first_key(text: &str) -> Option<usize> {
    let b = text.as_bytes();
    for (i, &c) in b.iter().enumerate() {
        if c != b',' {
            continue;
        }
        let mut j = i + 1;
        while j < b.len() && (b[j].is_ascii_alphanumeric() || b[j] == b'_') {
            j += 1;
        }
        if j > i + 1 && j < b.len() && b[j] == b'=' {
            return Some(i);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_with_commas() {
        let s = DatasetSpec::parse("/a,b/c.raw,nav=4x4,sig=8x8").unwrap();
        assert_eq!(s.path.as_deref(), Some("/a,b/c.raw"));
        assert_eq!(s.get("sig"), Some("8x8"));
        assert!(DatasetSpec::parse("x.raw,bogus=1").unwrap_err().to_string().contains("bogus"));
        let syn = DatasetSpec::parse("synthetic,nav=2x2,sig=4x4,dtype=uint16").unwrap();
        assert_eq!(syn.format.as_deref(), Some("synthetic"));
        assert_eq!(DatasetSpec::parse(&syn.to_string()).unwrap(), syn);
    }
}
