//! A strict reader of the zip archives `torch.save` and `torch.jit.save` write.
//!
//! We parse the central directory ourselves rather than trust a general zip
//! crate, because the checks that matter here are the ones general readers
//! skip: two entries with one name, entries sharing bytes, sizes past the end,
//! local headers that disagree with the directory. torch stores every entry
//! uncompressed, so anything compressed or encrypted is refused and entries are
//! read by slicing the file, never copied. CRC-32s are checked on read.

use std::collections::HashMap;
use std::ops::Range;

use crate::error::ZipError;

const EOCD_SIG: u32 = 0x0605_4b50;
const ZIP64_LOCATOR_SIG: u32 = 0x0706_4b50;
const ZIP64_EOCD_SIG: u32 = 0x0606_4b50;
const CENTRAL_SIG: u32 = 0x0201_4b50;
const LOCAL_SIG: u32 = 0x0403_4b50;
const EOCD_LEN: usize = 22;
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
    crc: u32,
    method: u16,
    header: usize,
}

/// A checked zip archive over the file's bytes.
#[derive(Debug)]
pub(crate) struct ZipArchive<'a> {
    bytes: &'a [u8],
    entries: Vec<ZipEntry>,
    by_name: HashMap<String, usize>,
}

/// Little-endian reads that fail instead of panicking.
struct Cursor<'a> {
    bytes: &'a [u8],
    what: &'a str,
}

impl Cursor<'_> {
    fn slice(&self, at: usize, n: usize) -> Result<&[u8], ZipError> {
        at.checked_add(n)
            .and_then(|end| self.bytes.get(at..end))
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

fn find_directory(bytes: &[u8]) -> Result<Directory, ZipError> {
    let file = Cursor {
        bytes,
        what: "end-of-central-directory record",
    };
    let last = bytes
        .len()
        .checked_sub(EOCD_LEN)
        .ok_or(ZipError::NoEndRecord)?;
    let first = last.saturating_sub(usize::from(u16::MAX));
    // The record is the one whose comment ends exactly at the end of the file.
    let mut eocd = None;
    for at in (first..=last).rev() {
        if file.u32(at)? == EOCD_SIG
            && at + EOCD_LEN + usize::from(file.u16(at + 20)?) == bytes.len()
        {
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
    if eocd >= 20 && file.u32(eocd - 20)? == ZIP64_LOCATOR_SIG {
        let locator = eocd - 20;
        let z = Cursor {
            bytes,
            what: "zip64 end-of-central-directory record",
        };
        if z.u32(locator + 4)? != 0 || z.u32(locator + 16)? > 1 {
            return Err(ZipError::MultiDisk);
        }
        let at = to_usize(z.u64(locator + 8)?, "zip64 end-of-central-directory record")?;
        if at.checked_add(56).is_none_or(|end| end > locator) || z.u32(at)? != ZIP64_EOCD_SIG {
            return Err(ZipError::Truncated {
                what: "zip64 end-of-central-directory record".into(),
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

impl<'a> ZipArchive<'a> {
    /// Parses and checks the whole directory and every local header.
    pub(crate) fn parse(bytes: &'a [u8]) -> Result<Self, ZipError> {
        let dir = find_directory(bytes)?;
        let cd = Cursor {
            bytes,
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
            let lh = Cursor { bytes, what: &name };
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
            if lh.slice(header + LOCAL_LEN, lname_len)? != name.as_bytes() {
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
            bytes,
            entries,
            by_name,
        })
    }

    /// Every entry, in central directory order.
    pub(crate) fn entries(&self) -> &[ZipEntry] {
        &self.entries
    }

    /// The bytes of an entry, after checking its CRC-32; `None` if absent.
    pub(crate) fn read(&self, name: &str) -> Result<Option<&'a [u8]>, ZipError> {
        let Some(e) = self.by_name.get(name).and_then(|&i| self.entries.get(i)) else {
            return Ok(None);
        };
        if e.method != STORED {
            return Err(ZipError::Compressed {
                entry: e.name.clone(),
                method: e.method,
            });
        }
        let data = self
            .bytes
            .get(e.data.clone())
            .ok_or_else(|| ZipError::OutOfBounds {
                entry: e.name.clone(),
                end: e.data.end as u64,
                limit: self.bytes.len() as u64,
            })?;
        let found = crc32fast::hash(data);
        if found != e.crc {
            return Err(ZipError::Crc {
                entry: e.name.clone(),
                expected: e.crc,
                found,
            });
        }
        Ok(Some(data))
    }

    /// The size of an entry without reading it.
    pub(crate) fn size(&self, name: &str) -> Option<usize> {
        let e = self.entries.get(*self.by_name.get(name)?)?;
        Some(e.data.len())
    }
}
