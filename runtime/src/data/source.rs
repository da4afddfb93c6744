//! Finding a data set's files in a directory and reading them, gzipped or not.
//!
//! Invariant: a file is recognised as gzip by its first two bytes (0x1f 0x8b), never by its
//! name, so `train-images-idx3-ubyte` may hold either form; and a file that is asked for but
//! absent is an error listing every name tried, never a silently smaller split.

use std::io::Read;
use std::path::{Path, PathBuf};

use super::DataError;

/// The two bytes every gzip member starts with.
const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];

/// Reads a whole file, decompressing it when it is gzip data.
///
/// # Errors
///
/// [`DataError::Io`] when the file cannot be read, [`DataError::Gzip`] when it starts like
/// gzip data but does not decompress to the end.
pub fn read_maybe_gzip(path: &Path) -> Result<Vec<u8>, DataError> {
    let bytes = std::fs::read(path).map_err(|source| DataError::io(path, source))?;
    if !bytes.starts_with(&GZIP_MAGIC) {
        return Ok(bytes);
    }

    // Several gzip members in one file are legal; MultiGzDecoder reads them all.
    let mut decoded = Vec::with_capacity(bytes.len() * 4);
    flate2::read::MultiGzDecoder::new(bytes.as_slice())
        .read_to_end(&mut decoded)
        .map_err(|source| DataError::Gzip {
            path: path.to_path_buf(),
            source,
        })?;
    Ok(decoded)
}

/// The first of `names` that exists as a file in `dir` (each name also tried with `.gz`).
///
/// # Errors
///
/// [`DataError::NotFound`] naming the directory, `what` and every name tried.
pub fn find_file(dir: &Path, names: &[&str], what: &str) -> Result<PathBuf, DataError> {
    let mut tried = Vec::with_capacity(names.len() * 2);
    for name in names {
        for candidate in [name.to_string(), format!("{name}.gz")] {
            let path = dir.join(&candidate);
            if path.is_file() {
                return Ok(path);
            }
            tried.push(candidate);
        }
    }
    Err(DataError::NotFound {
        dir: dir.to_path_buf(),
        what: what.to_string(),
        tried,
    })
}

/// `dir` itself when it holds `marker`, else `dir/sub` when that does: data sets are often
/// unpacked into a folder of their own (`cifar-10-batches-bin/`), and users may point at
/// either level.
pub fn resolve_folder(dir: &Path, marker: &str, sub: &str) -> PathBuf {
    let nested = dir.join(sub);
    let holds = |folder: &Path| {
        let plain = folder.join(marker);
        let zipped = folder.join(format!("{marker}.gz"));
        plain.is_file() || zipped.is_file()
    };
    if !holds(dir) && holds(&nested) {
        nested
    } else {
        dir.to_path_buf()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn gzip(bytes: &[u8]) -> Vec<u8> {
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        encoder.write_all(bytes).unwrap();
        encoder.finish().unwrap()
    }

    #[test]
    fn gzip_is_detected_by_content_not_name() {
        let dir = tempfile::tempdir().unwrap();
        let plain = dir.path().join("data.gz");
        std::fs::write(&plain, b"not compressed").unwrap();
        assert_eq!(read_maybe_gzip(&plain).unwrap(), b"not compressed");

        let zipped = dir.path().join("data");
        std::fs::write(&zipped, gzip(b"compressed")).unwrap();
        assert_eq!(read_maybe_gzip(&zipped).unwrap(), b"compressed");
    }

    #[test]
    fn truncated_gzip_is_an_error_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cut.gz");
        let full = gzip(&[7u8; 10000]);
        std::fs::write(&path, &full[..full.len() / 2]).unwrap();
        let error = read_maybe_gzip(&path).unwrap_err();
        assert!(matches!(error, DataError::Gzip { .. }), "{error:?}");
        assert!(error.to_string().contains("cut.gz"), "{error}");
    }

    #[test]
    fn find_file_lists_every_name_tried() {
        let dir = tempfile::tempdir().unwrap();
        let error = find_file(dir.path(), &["a", "b"], "training images").unwrap_err();
        let message = error.to_string();
        assert!(message.contains("a, a.gz, b, b.gz"), "{message}");
        assert!(message.contains("training images"), "{message}");

        std::fs::write(dir.path().join("b.gz"), b"").unwrap();
        let found = find_file(dir.path(), &["a", "b"], "training images").unwrap();
        assert_eq!(found, dir.path().join("b.gz"));
    }

    #[test]
    fn resolve_folder_descends_only_when_the_marker_is_below() {
        let dir = tempfile::tempdir().unwrap();
        let sub = dir.path().join("inner");
        std::fs::create_dir(&sub).unwrap();
        assert_eq!(resolve_folder(dir.path(), "m.bin", "inner"), dir.path());
        std::fs::write(sub.join("m.bin"), b"").unwrap();
        assert_eq!(resolve_folder(dir.path(), "m.bin", "inner"), sub);
        std::fs::write(dir.path().join("m.bin"), b"").unwrap();
        assert_eq!(resolve_folder(dir.path(), "m.bin", "inner"), dir.path());
    }
}
