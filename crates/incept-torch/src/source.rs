//! Where a checkpoint's bytes come from: a slice already in memory, or a file
//! read by position, a piece at a time.
//!
//! The readers above this module ask for exactly the bytes they need (the zip
//! directory from the tail, the pickles, one storage at a time) and check every
//! declared size against [`Source::len`] before asking, so a file source never
//! allocates for bytes the file does not have. A slice source lends its bytes
//! and copies nothing.

use std::borrow::Cow;
use std::fs::File;
use std::io;
use std::path::Path;

use crate::error::ReadError;

/// Bytes that can be read at any offset.
pub(crate) trait Source {
    /// The total length.
    fn len(&self) -> usize;

    /// Exactly `len` bytes from `offset`: borrowed from memory, or read into a
    /// new buffer. Bytes past [`Source::len`] are an `UnexpectedEof` error,
    /// raised before anything is allocated.
    fn read_at(&self, offset: usize, len: usize) -> io::Result<Cow<'_, [u8]>>;

    /// Fills `buf` with the bytes from `offset` (a file reads straight into it).
    fn read_into(&self, offset: usize, buf: &mut [u8]) -> io::Result<()> {
        buf.copy_from_slice(&self.read_at(offset, buf.len())?);
        Ok(())
    }

    /// [`Source::read_at`] with the failure described for messages.
    fn read_for(&self, what: &str, offset: usize, len: usize) -> Result<Cow<'_, [u8]>, ReadError> {
        self.read_at(offset, len).map_err(|error| ReadError {
            what: what.to_owned(),
            offset: offset as u64,
            end: (offset as u64).saturating_add(len as u64),
            kind: error.kind(),
            message: error.to_string(),
        })
    }
}

fn past_end(offset: usize, len: usize, total: usize) -> io::Error {
    io::Error::new(
        io::ErrorKind::UnexpectedEof,
        format!(
            "bytes {offset}..{} lie past the end ({total} bytes)",
            (offset as u64).saturating_add(len as u64)
        ),
    )
}

impl Source for [u8] {
    fn len(&self) -> usize {
        <[u8]>::len(self)
    }

    fn read_at(&self, offset: usize, len: usize) -> io::Result<Cow<'_, [u8]>> {
        offset
            .checked_add(len)
            .and_then(|end| self.get(offset..end))
            .map(Cow::Borrowed)
            .ok_or_else(|| past_end(offset, len, <[u8]>::len(self)))
    }
}

/// A regular file read with positioned reads; its length is taken once, when
/// it is opened.
#[derive(Debug)]
pub(crate) struct FileSource {
    file: File,
    len: usize,
}

impl FileSource {
    /// Opens `path`; `Ok(None)` when it is not a regular file (a pipe, a
    /// device), which cannot be read by position.
    pub(crate) fn open(path: &Path) -> io::Result<Option<FileSource>> {
        let file = File::open(path)?;
        let meta = file.metadata()?;
        if !meta.is_file() {
            return Ok(None);
        }
        let len = usize::try_from(meta.len()).map_err(|_| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                "the file is larger than this platform's address space",
            )
        })?;
        Ok(Some(FileSource { file, len }))
    }
}

impl Source for FileSource {
    fn len(&self) -> usize {
        self.len
    }

    fn read_at(&self, offset: usize, len: usize) -> io::Result<Cow<'_, [u8]>> {
        if offset.checked_add(len).is_none_or(|end| end > self.len) {
            return Err(past_end(offset, len, self.len));
        }
        let mut buf = vec![0u8; len];
        read_exact_at(&self.file, &mut buf, offset as u64)?;
        Ok(Cow::Owned(buf))
    }

    fn read_into(&self, offset: usize, buf: &mut [u8]) -> io::Result<()> {
        if offset
            .checked_add(buf.len())
            .is_none_or(|end| end > self.len)
        {
            return Err(past_end(offset, buf.len(), self.len));
        }
        read_exact_at(&self.file, buf, offset as u64)
    }
}

#[cfg(unix)]
fn read_exact_at(file: &File, buf: &mut [u8], offset: u64) -> io::Result<()> {
    std::os::unix::fs::FileExt::read_exact_at(file, buf, offset)
}

#[cfg(not(unix))]
fn read_exact_at(file: &File, buf: &mut [u8], offset: u64) -> io::Result<()> {
    use std::io::{Read, Seek, SeekFrom};
    // `&File` implements Read and Seek; the loader reads from one thread.
    let mut f = file;
    f.seek(SeekFrom::Start(offset))?;
    f.read_exact(buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slices_lend_and_refuse_past_the_end() {
        let b: &[u8] = b"0123456789";
        assert!(matches!(b.read_at(2, 3).unwrap(), Cow::Borrowed(b"234")));
        assert_eq!(&*b.read_at(10, 0).unwrap(), b"");
        for (at, n) in [(8, 3), (11, 0), (usize::MAX, 2)] {
            let e = b.read_at(at, n).unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof);
        }
    }

    #[test]
    fn files_read_by_position_and_check_before_allocating() {
        let path = std::env::temp_dir().join(format!("incept_source_{}", std::process::id()));
        std::fs::write(&path, b"0123456789").unwrap();
        let f = FileSource::open(&path).unwrap().unwrap();
        assert_eq!(f.len(), 10);
        assert_eq!(&*f.read_at(7, 3).unwrap(), b"789");
        assert_eq!(&*f.read_at(0, 2).unwrap(), b"01");
        // A length no file has: refused by arithmetic, not by the allocator.
        let e = f.read_at(0, usize::MAX / 2).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof);
        let e = f.read_for("x", 9, 2).unwrap_err();
        assert_eq!((e.offset, e.end), (9, 11));
        let _ = std::fs::remove_file(&path);
        assert!(FileSource::open(&std::env::temp_dir()).unwrap().is_none());
    }
}
