//! A strict reader of the zip archives `torch.save` and `torch.jit.save` write.
//!
//! We parse the central directory ourselves rather than trust a general zip
//! crate, because the checks that matter here are the ones general readers
//! skip: two entries with one name, entries sharing bytes, sizes past the end,
//! local headers that disagree with the directory. torch stores every entry
//! uncompressed, so anything compressed or encrypted is refused. CRC-32s are
//! checked on read.
//!
//! The archive is read through a [`Source`]: the end record and the central
//! directory from the tail, one local header per entry, and an entry's bytes
//! only when it is read. Every extent is checked against the file's length
//! (and the directory's start) before it is read, so no declared size
//! allocates more than the file holds.

use std::borrow::Cow;
use std::collections::HashMap;
use std::ops::Range;

use crate::error::ZipError;
use crate::source::Source;

const EOCD_SIG: u32 = 0x0605_4b50;
const ZIP64_LOCATOR_SIG: u32 = 0x0706_4b50;
const ZIP64_EOCD_SIG: u32 = 0x0606_4b50;
const CENTRAL_SIG: u32 = 0x0201_4b50;
const LOCAL_SIG: u32 = 0x0403_4b50;
const EOCD_LEN: usize = 22;
const ZIP64_LOCATOR_LEN: usize = 20;
const ZIP64_EOCD_LEN: usize = 56;
const STORED: u16 = 0;
const DEFLATE: u16 = 8;
const CENTRAL_LEN: usize = 46;
const LOCAL_LEN: usize = 30;

/// One stored entry: its name and where its bytes are in the file.
#[derive(Clone, Debug)]
pub(crate) struct ZipEntry {
    /// The name, e.g. `archive/data/0`.
    pub name: String,
    /// The entry's bytes within the file.
    pub data: Range<usize>,
    /// The CRC-32 the central directory declares.
    pub crc: u32,
    method: u16,
    header: usize,
}

/// A checked zip archive over a source of bytes.
#[derive(Debug)]
pub(crate) struct ZipArchive<'a, S: Source + ?Sized> {
    src: &'a S,
    entries: Vec<ZipEntry>,
    by_name: HashMap<String, usize>,
}

/// Little-endian reads, at absolute file offsets, of bytes read from the file
/// starting at `base`; they fail instead of panicking.
struct Cursor<'a> {
    bytes: &'a [u8],
    base: usize,
    what: &'a str,
}

impl Cursor<'_> {
    fn slice(&self, at: usize, n: usize) -> Result<&[u8], ZipError> {
        at.checked_sub(self.base)
            .and_then(|rel| rel.checked_add(n).and_then(|end| self.bytes.get(rel..end)))
            .ok_or_else(|| ZipError::Truncated {
                what: self.what.to_owned(),
            })
    }

    fn u16(&self, at: usize) -> Result<u16, ZipError> {
        let s = self.slice(at, 2)?;
        Ok(u16::from_le_bytes([s[0], s[1]]))
    }

    fn u32(&self, at: usize) -> Result<u32, ZipError> {
        let s = self.slice(at, 4)?;
        Ok(u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
    }

    fn u64(&self, at: usize) -> Result<u64, ZipError> {
        let s = self.slice(at, 8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(s);
        Ok(u64::from_le_bytes(a))
    }
}

/// Reads `n` bytes at `at`: a zip record that must lie inside the file, or the
/// archive is truncated.
fn read_record<'a, S: Source + ?Sized>(
    src: &'a S,
    at: usize,
    n: usize,
    what: &str,
) -> Result<Cow<'a, [u8]>, ZipError> {
    if at.checked_add(n).is_none_or(|end| end > src.len()) {
        return Err(ZipError::Truncated {
            what: what.to_owned(),
        });
    }
    src.read_for(what, at, n).map_err(ZipError::Read)
}

fn to_usize(x: u64, what: &str) -> Result<usize, ZipError> {
    usize::try_from(x).map_err(|_| ZipError::Truncated {
        what: what.to_owned(),
    })
}

/// Where the central directory is and how many entries it declares.
struct Directory {
    offset: usize,
    size: usize,
    count: u64,
    /// Where the directory must end: the zip64 or plain end record.
    limit: usize,
}

fn find_directory<S: Source + ?Sized>(src: &S) -> Result<Directory, ZipError> {
    const WHAT: &str = "end-of-central-directory record";
    let len = src.len();
    let last = len.checked_sub(EOCD_LEN).ok_or(ZipError::NoEndRecord)?;
    let first = last.saturating_sub(usize::from(u16::MAX));
    // The tail that can hold the end record (whose comment is at most 64 KiB)
    // and the zip64 locator just before it.
    let base = first.saturating_sub(ZIP64_LOCATOR_LEN);
    let tail = read_record(src, base, len - base, WHAT)?;
    let file = Cursor {
        bytes: &tail,
        base,
        what: WHAT,
    };
    // The record is the one whose comment ends exactly at the end of the file.
    let mut eocd = None;
    for at in (first..=last).rev() {
        if file.u32(at)? == EOCD_SIG && at + EOCD_LEN + usize::from(file.u16(at + 20)?) == len {
            eocd = Some(at);
            break;
        }
    }
    let eocd = eocd.ok_or(ZipError::NoEndRecord)?;
    if file.u16(eocd + 4)? != 0 || file.u16(eocd + 6)? != 0 {
        return Err(ZipError::MultiDisk);
    }
    let mut count = u64::from(file.u16(eocd + 10)?);
    let mut size = u64::from(file.u32(eocd + 12)?);
    let mut offset = u64::from(file.u32(eocd + 16)?);
    let mut limit = eocd;
    if eocd >= ZIP64_LOCATOR_LEN && file.u32(eocd - ZIP64_LOCATOR_LEN)? == ZIP64_LOCATOR_SIG {
        const WHAT64: &str = "zip64 end-of-central-directory record";
        let locator = eocd - ZIP64_LOCATOR_LEN;
        let z = Cursor {
            bytes: &tail,
            base,
            what: WHAT64,
        };
        if z.u32(locator + 4)? != 0 || z.u32(locator + 16)? > 1 {
            return Err(ZipError::MultiDisk);
        }
        let at = to_usize(z.u64(locator + 8)?, WHAT64)?;
        if at
            .checked_add(ZIP64_EOCD_LEN)
            .is_none_or(|end| end > locator)
        {
            return Err(ZipError::Truncated {
                what: WHAT64.into(),
            });
        }
        let record = read_record(src, at, ZIP64_EOCD_LEN, WHAT64)?;
        let z = Cursor {
            bytes: &record,
            base: at,
            what: WHAT64,
        };
        if z.u32(at)? != ZIP64_EOCD_SIG {
            return Err(ZipError::Truncated {
                what: WHAT64.into(),
            });
        }
        if z.u32(at + 16)? != 0 || z.u32(at + 20)? != 0 {
            return Err(ZipError::MultiDisk);
        }
        if z.u64(at + 24)? != z.u64(at + 32)? {
            return Err(ZipError::MultiDisk);
        }
        count = z.u64(at + 32)?;
        size = z.u64(at + 40)?;
        offset = z.u64(at + 48)?;
        limit = at;
    } else if file.u16(eocd + 8)? != file.u16(eocd + 10)? {
        return Err(ZipError::MultiDisk);
    }
    let offset = to_usize(offset, "central directory")?;
    let size = to_usize(size, "central directory")?;
    if offset.checked_add(size).is_none_or(|end| end > limit) {
        return Err(ZipError::Truncated {
            what: "central directory".into(),
        });
    }
    if count.saturating_mul(CENTRAL_LEN as u64) > size as u64 {
        return Err(ZipError::TooManyEntries { count });
    }
    Ok(Directory {
        offset,
        size,
        count,
        limit,
    })
}

impl<'a, S: Source + ?Sized> ZipArchive<'a, S> {
    /// Parses and checks the whole directory and every local header.
    pub(crate) fn parse(src: &'a S) -> Result<Self, ZipError> {
        let dir = find_directory(src)?;
        // Within the file: checked against the end record's offset above.
        let directory = read_record(src, dir.offset, dir.size, "central directory")?;
        let cd = Cursor {
            bytes: &directory,
            base: dir.offset,
            what: "central directory",
        };
        let mut entries: Vec<ZipEntry> = Vec::new();
        let mut by_name = HashMap::new();
        let mut at = dir.offset;
        let cd_end = dir.offset + dir.size;
        for index in 0..dir.count as usize {
            let bad = |reason: &str| ZipError::BadRecord {
                index,
                reason: reason.to_owned(),
            };
            if at + CENTRAL_LEN > cd_end {
                return Err(ZipError::Truncated {
                    what: format!("central directory record {index}"),
                });
            }
            if cd.u32(at)? != CENTRAL_SIG {
                return Err(bad("bad signature"));
            }
            let flags = cd.u16(at + 8)?;
            let method = cd.u16(at + 10)?;
            let crc = cd.u32(at + 16)?;
            let mut csize = u64::from(cd.u32(at + 20)?);
            let mut usize_ = u64::from(cd.u32(at + 24)?);
            let name_len = usize::from(cd.u16(at + 28)?);
            let extra_len = usize::from(cd.u16(at + 30)?);
            let comment_len = usize::from(cd.u16(at + 32)?);
            let disk = cd.u16(at + 34)?;
            let mut local = u64::from(cd.u32(at + 42)?);
            let record_end = at + CENTRAL_LEN + name_len + extra_len + comment_len;
            if record_end > cd_end {
                return Err(ZipError::Truncated {
                    what: format!("central directory record {index}"),
                });
            }
            let name = std::str::from_utf8(cd.slice(at + CENTRAL_LEN, name_len)?)
                .map_err(|_| bad("the entry name is not UTF-8"))?
                .to_owned();
            // Zip64 extra field: the 64-bit values of the fields saturated at 0xFFFFFFFF.
            let extra = cd.slice(at + CENTRAL_LEN + name_len, extra_len)?;
            let mut e = 0usize;
            while e + 4 <= extra.len() {
                let x = Cursor {
                    bytes: extra,
                    base: 0,
                    what: "zip64 extra field",
                };
                let id = x.u16(e)?;
                let len = usize::from(x.u16(e + 2)?);
                if id == 0x0001 {
                    let mut p = e + 4;
                    let end = e + 4 + len;
                    for field in [&mut usize_, &mut csize, &mut local] {
                        if *field == u64::from(u32::MAX) {
                            if p + 8 > end {
                                return Err(bad("zip64 extra field too short"));
                            }
                            *field = x.u64(p)?;
                            p += 8;
                        }
                    }
                }
                e += 4 + len;
            }
            if disk != 0 && disk != u16::MAX {
                return Err(ZipError::MultiDisk);
            }
            if flags & 0x0041 != 0 {
                return Err(ZipError::Encrypted { entry: name });
            }
            // TorchScript deflates its `code/` entries, which are never read:
            // deflate may be listed, but only stored entries can be read.
            if method != STORED && method != DEFLATE {
                return Err(ZipError::Compressed {
                    entry: name,
                    method,
                });
            }
            if method == STORED && csize != usize_ {
                return Err(ZipError::BadRecord {
                    index,
                    reason: format!(
                        "entry `{name}` is stored but its compressed and uncompressed sizes differ"
                    ),
                });
            }
            let header = to_usize(local, "local header")?;
            if header
                .checked_add(LOCAL_LEN)
                .is_none_or(|end| end > dir.offset)
            {
                return Err(ZipError::OutOfBounds {
                    entry: name,
                    end: local.saturating_add(LOCAL_LEN as u64),
                    limit: dir.offset as u64,
                });
            }
            let local_header = read_record(src, header, LOCAL_LEN, &name)?;
            let lh = Cursor {
                bytes: &local_header,
                base: header,
                what: &name,
            };
            if lh.u32(header)? != LOCAL_SIG {
                return Err(ZipError::LocalHeaderMismatch {
                    entry: name,
                    field: "signature",
                });
            }
            let lflags = lh.u16(header + 6)?;
            if lh.u16(header + 8)? != method {
                return Err(ZipError::LocalHeaderMismatch {
                    entry: name,
                    field: "compression method",
                });
            }
            if lflags & 0x0041 != 0 {
                return Err(ZipError::Encrypted { entry: name });
            }
            if lflags & 0x0008 == 0 {
                let lcrc = lh.u32(header + 14)?;
                let lsize = lh.u32(header + 18)?;
                if lcrc != crc {
                    return Err(ZipError::LocalHeaderMismatch {
                        entry: name,
                        field: "CRC-32",
                    });
                }
                if lsize != u32::MAX && u64::from(lsize) != csize {
                    return Err(ZipError::LocalHeaderMismatch {
                        entry: name,
                        field: "size",
                    });
                }
            }
            let lname_len = usize::from(lh.u16(header + 26)?);
            let lextra_len = usize::from(lh.u16(header + 28)?);
            let name_at = header + LOCAL_LEN;
            if name_at
                .checked_add(lname_len)
                .is_none_or(|end| end > src.len())
            {
                return Err(ZipError::Truncated { what: name });
            }
            if lname_len != name.len()
                || *read_record(src, name_at, lname_len, &name)? != *name.as_bytes()
            {
                return Err(ZipError::LocalHeaderMismatch {
                    entry: name,
                    field: "name",
                });
            }
            let start = header + LOCAL_LEN + lname_len + lextra_len;
            let end = (start as u64).saturating_add(csize);
            if end > dir.offset as u64 {
                return Err(ZipError::OutOfBounds {
                    entry: name,
                    end,
                    limit: dir.offset.min(dir.limit) as u64,
                });
            }
            let end = end as usize;
            if by_name.insert(name.clone(), entries.len()).is_some() {
                return Err(ZipError::DuplicateEntry { name });
            }
            entries.push(ZipEntry {
                name,
                data: start..end,
                crc,
                method,
                header,
            });
            at = record_end;
        }
        let mut order: Vec<&ZipEntry> = entries.iter().collect();
        order.sort_by_key(|e| e.header);
        for pair in order.windows(2) {
            if let [a, b] = pair
                && a.data.end > b.header
            {
                return Err(ZipError::Overlap {
                    first: a.name.clone(),
                    second: b.name.clone(),
                });
            }
        }
        Ok(ZipArchive {
            src,
            entries,
            by_name,
        })
    }

    /// Every entry, in central directory order.
    pub(crate) fn entries(&self) -> &[ZipEntry] {
        &self.entries
    }

    /// A stored entry, without reading it; `None` if absent. A compressed
    /// entry is an error: only stored entries can be read.
    pub(crate) fn stored(&self, name: &str) -> Result<Option<&ZipEntry>, ZipError> {
        let Some(e) = self.by_name.get(name).and_then(|&i| self.entries.get(i)) else {
            return Ok(None);
        };
        if e.method != STORED {
            return Err(ZipError::Compressed {
                entry: e.name.clone(),
                method: e.method,
            });
        }
        Ok(Some(e))
    }

    /// The bytes of an entry, after checking its CRC-32; `None` if absent.
    pub(crate) fn read(&self, name: &str) -> Result<Option<Cow<'a, [u8]>>, ZipError> {
        let Some(e) = self.stored(name)? else {
            return Ok(None);
        };
        read_entry(self.src, e).map(Some)
    }

    /// The size of an entry without reading it.
    pub(crate) fn size(&self, name: &str) -> Option<usize> {
        let e = self.entries.get(*self.by_name.get(name)?)?;
        Some(e.data.len())
    }
}

/// The bytes of a stored entry of an archive over `src`, after checking its CRC-32.
fn read_entry<'s, S: Source + ?Sized>(src: &'s S, e: &ZipEntry) -> Result<Cow<'s, [u8]>, ZipError> {
    if e.data.end > src.len() {
        return Err(ZipError::OutOfBounds {
            entry: e.name.clone(),
            end: e.data.end as u64,
            limit: src.len() as u64,
        });
    }
    let data = src
        .read_for(&e.name, e.data.start, e.data.len())
        .map_err(ZipError::Read)?;
    let found = crc32fast::hash(&data);
    if found != e.crc {
        return Err(ZipError::Crc {
            entry: e.name.clone(),
            expected: e.crc,
            found,
        });
    }
    Ok(data)
}
