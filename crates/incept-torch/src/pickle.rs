//! Just enough pickle to read PyTorch checkpoints, and nothing that runs code.
//!
//! The machine below interprets the opcodes `torch.save` and `torch.jit.save`
//! write (protocol 2, which torch uses by default, up to 5), keeps its stack and
//! mark stack in `Vec`s (no recursion, whatever the nesting), resolves every
//! global through [`crate::allowlist`], resolves persistent ids to storages
//! without reading them, and caps the work a pickle may cause:
//!
//! - every container records its expanded weight, capped at [`MAX_EXPANDED`],
//!   so `h0 h0 TUPLE2 q0` repeated fails after a few dozen bytes instead of
//!   building a tree any later walk would take forever over; the values
//!   created are counted and capped too ([`MAX_CREATED`]);
//! - nested MARKs and the stack length are capped;
//! - integers wider than 64 bits, opcodes torch never writes, BUILD or SETITEM
//!   on anything but a dict, and unknown persistent ids are errors with the
//!   byte offset of the opcode.

use std::collections::HashMap;
use std::rc::Rc;

use crate::allowlist::{self, Global, Mode};
use crate::error::PickleError;
use crate::storage::StorageRef;
use crate::value::{Dict, Heap, Obj, ObjId, Value};

/// Cap on the expanded size of any one value (its tree with every shared
/// reference copied out): what memo amplification multiplies.
pub(crate) const MAX_EXPANDED: u64 = 1 << 25;
/// Cap on the values one pickle creates (list items, dict entries, tuples…).
pub(crate) const MAX_CREATED: u64 = 1 << 24;
/// Cap on nested MARKs.
pub(crate) const MAX_MARKS: usize = 1024;
/// Cap on the number of values on the stack.
pub(crate) const MAX_STACK: usize = 1 << 20;
/// Longest module or class name GLOBAL may carry.
const MAX_GLOBAL_LINE: usize = 512;
/// Longest storage key accepted.
const MAX_KEY_LEN: usize = 128;

/// The opcodes of pickle protocols 0 to 5. Those torch never writes are
/// recognised only to be refused by name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Op {
    Mark,
    Stop,
    Pop,
    PopMark,
    Dup,
    Float,
    Int,
    BinInt,
    BinInt1,
    Long,
    BinInt2,
    None,
    PersId,
    BinPersId,
    Reduce,
    String,
    BinString,
    ShortBinString,
    Unicode,
    BinUnicode,
    Append,
    Build,
    Global,
    Dict,
    EmptyDict,
    Appends,
    Get,
    BinGet,
    Inst,
    LongBinGet,
    List,
    EmptyList,
    Obj,
    Put,
    BinPut,
    LongBinPut,
    SetItem,
    Tuple,
    EmptyTuple,
    SetItems,
    BinFloat,
    Proto,
    NewObj,
    Ext1,
    Ext2,
    Ext4,
    Tuple1,
    Tuple2,
    Tuple3,
    NewTrue,
    NewFalse,
    Long1,
    Long4,
    BinBytes,
    ShortBinBytes,
    ShortBinUnicode,
    BinUnicode8,
    BinBytes8,
    EmptySet,
    AddItems,
    FrozenSet,
    NewObjEx,
    StackGlobal,
    Memoize,
    Frame,
    ByteArray8,
    NextBuffer,
    ReadonlyBuffer,
}

impl Op {
    fn from_byte(b: u8) -> Option<Op> {
        Some(match b {
            b'(' => Op::Mark,
            b'.' => Op::Stop,
            b'0' => Op::Pop,
            b'1' => Op::PopMark,
            b'2' => Op::Dup,
            b'F' => Op::Float,
            b'I' => Op::Int,
            b'J' => Op::BinInt,
            b'K' => Op::BinInt1,
            b'L' => Op::Long,
            b'M' => Op::BinInt2,
            b'N' => Op::None,
            b'P' => Op::PersId,
            b'Q' => Op::BinPersId,
            b'R' => Op::Reduce,
            b'S' => Op::String,
            b'T' => Op::BinString,
            b'U' => Op::ShortBinString,
            b'V' => Op::Unicode,
            b'X' => Op::BinUnicode,
            b'a' => Op::Append,
            b'b' => Op::Build,
            b'c' => Op::Global,
            b'd' => Op::Dict,
            b'}' => Op::EmptyDict,
            b'e' => Op::Appends,
            b'g' => Op::Get,
            b'h' => Op::BinGet,
            b'i' => Op::Inst,
            b'j' => Op::LongBinGet,
            b'l' => Op::List,
            b']' => Op::EmptyList,
            b'o' => Op::Obj,
            b'p' => Op::Put,
            b'q' => Op::BinPut,
            b'r' => Op::LongBinPut,
            b's' => Op::SetItem,
            b't' => Op::Tuple,
            b')' => Op::EmptyTuple,
            b'u' => Op::SetItems,
            b'G' => Op::BinFloat,
            0x80 => Op::Proto,
            0x81 => Op::NewObj,
            0x82 => Op::Ext1,
            0x83 => Op::Ext2,
            0x84 => Op::Ext4,
            0x85 => Op::Tuple1,
            0x86 => Op::Tuple2,
            0x87 => Op::Tuple3,
            0x88 => Op::NewTrue,
            0x89 => Op::NewFalse,
            0x8a => Op::Long1,
            0x8b => Op::Long4,
            b'B' => Op::BinBytes,
            b'C' => Op::ShortBinBytes,
            0x8c => Op::ShortBinUnicode,
            0x8d => Op::BinUnicode8,
            0x8e => Op::BinBytes8,
            0x8f => Op::EmptySet,
            0x90 => Op::AddItems,
            0x91 => Op::FrozenSet,
            0x92 => Op::NewObjEx,
            0x93 => Op::StackGlobal,
            0x94 => Op::Memoize,
            0x95 => Op::Frame,
            0x96 => Op::ByteArray8,
            0x97 => Op::NextBuffer,
            0x98 => Op::ReadonlyBuffer,
            _ => return None,
        })
    }

    fn name(self) -> &'static str {
        match self {
            Op::Mark => "MARK",
            Op::Stop => "STOP",
            Op::Pop => "POP",
            Op::PopMark => "POP_MARK",
            Op::Dup => "DUP",
            Op::Float => "FLOAT",
            Op::Int => "INT",
            Op::BinInt => "BININT",
            Op::BinInt1 => "BININT1",
            Op::Long => "LONG",
            Op::BinInt2 => "BININT2",
            Op::None => "NONE",
            Op::PersId => "PERSID",
            Op::BinPersId => "BINPERSID",
            Op::Reduce => "REDUCE",
            Op::String => "STRING",
            Op::BinString => "BINSTRING",
            Op::ShortBinString => "SHORT_BINSTRING",
            Op::Unicode => "UNICODE",
            Op::BinUnicode => "BINUNICODE",
            Op::Append => "APPEND",
            Op::Build => "BUILD",
            Op::Global => "GLOBAL",
            Op::Dict => "DICT",
            Op::EmptyDict => "EMPTY_DICT",
            Op::Appends => "APPENDS",
            Op::Get => "GET",
            Op::BinGet => "BINGET",
            Op::Inst => "INST",
            Op::LongBinGet => "LONG_BINGET",
            Op::List => "LIST",
            Op::EmptyList => "EMPTY_LIST",
            Op::Obj => "OBJ",
            Op::Put => "PUT",
            Op::BinPut => "BINPUT",
            Op::LongBinPut => "LONG_BINPUT",
            Op::SetItem => "SETITEM",
            Op::Tuple => "TUPLE",
            Op::EmptyTuple => "EMPTY_TUPLE",
            Op::SetItems => "SETITEMS",
            Op::BinFloat => "BINFLOAT",
            Op::Proto => "PROTO",
            Op::NewObj => "NEWOBJ",
            Op::Ext1 => "EXT1",
            Op::Ext2 => "EXT2",
            Op::Ext4 => "EXT4",
            Op::Tuple1 => "TUPLE1",
            Op::Tuple2 => "TUPLE2",
            Op::Tuple3 => "TUPLE3",
            Op::NewTrue => "NEWTRUE",
            Op::NewFalse => "NEWFALSE",
            Op::Long1 => "LONG1",
            Op::Long4 => "LONG4",
            Op::BinBytes => "BINBYTES",
            Op::ShortBinBytes => "SHORT_BINBYTES",
            Op::ShortBinUnicode => "SHORT_BINUNICODE",
            Op::BinUnicode8 => "BINUNICODE8",
            Op::BinBytes8 => "BINBYTES8",
            Op::EmptySet => "EMPTY_SET",
            Op::AddItems => "ADDITEMS",
            Op::FrozenSet => "FROZENSET",
            Op::NewObjEx => "NEWOBJ_EX",
            Op::StackGlobal => "STACK_GLOBAL",
            Op::Memoize => "MEMOIZE",
            Op::Frame => "FRAME",
            Op::ByteArray8 => "BYTEARRAY8",
            Op::NextBuffer => "NEXT_BUFFER",
            Op::ReadonlyBuffer => "READONLY_BUFFER",
        }
    }
}

/// The result of running one pickle.
#[derive(Debug)]
pub(crate) struct Parsed {
    /// Every container the pickle built.
    pub heap: Heap,
    /// The value STOP returned.
    pub root: Value,
    /// Offset just past STOP.
    pub end: usize,
}

impl Parsed {
    /// Every storage the pickle's persistent ids named, in the order first seen.
    pub(crate) fn storages(&self) -> impl Iterator<Item = &StorageRef> {
        self.heap.iter().filter_map(|o| match o {
            Obj::Storage(s) => Some(s),
            _ => None,
        })
    }
}

/// Runs a pickle that must fill `data` exactly (a zip entry).
pub(crate) fn parse_exact(data: &[u8], mode: Mode) -> Result<Parsed, PickleError> {
    let parsed = parse_at(data, 0, mode)?;
    if parsed.end < data.len() {
        return Err(PickleError::TrailingBytes {
            offset: parsed.end,
            count: data.len() - parsed.end,
        });
    }
    Ok(parsed)
}

/// Runs the pickle that starts at `start` in `data` and stops at its STOP
/// (legacy streams hold several pickles back to back). Offsets in errors are
/// offsets in `data`.
pub(crate) fn parse_at(data: &[u8], start: usize, mode: Mode) -> Result<Parsed, PickleError> {
    Machine {
        data,
        pos: start,
        mode,
        stack: Vec::new(),
        marks: Vec::new(),
        memo: HashMap::new(),
        heap: Heap::default(),
        created: 0,
        storages: HashMap::new(),
    }
    .run()
}

struct Machine<'a> {
    data: &'a [u8],
    pos: usize,
    mode: Mode,
    stack: Vec<Value>,
    marks: Vec<usize>,
    memo: HashMap<u64, Value>,
    heap: Heap,
    created: u64,
    storages: HashMap<Rc<str>, ObjId>,
}

impl<'a> Machine<'a> {
    fn run(mut self) -> Result<Parsed, PickleError> {
        loop {
            let at = self.pos;
            let Some(&byte) = self.data.get(at) else {
                return Err(PickleError::MissingStop { offset: at });
            };
            self.pos += 1;
            let op = Op::from_byte(byte).ok_or(PickleError::UnknownOpcode { offset: at, byte })?;
            if op == Op::Stop {
                if self.stack.len() != 1 || !self.marks.is_empty() {
                    return Err(PickleError::BadStop {
                        offset: at,
                        count: self.stack.len(),
                    });
                }
                let root = self.stack.pop().unwrap_or(Value::None);
                return Ok(Parsed {
                    heap: self.heap,
                    root,
                    end: self.pos,
                });
            }
            self.step(op, at)?;
            if self.stack.len() > MAX_STACK {
                return Err(PickleError::Depth {
                    offset: at,
                    what: "values on the stack",
                    limit: MAX_STACK,
                });
            }
        }
    }

    fn step(&mut self, op: Op, at: usize) -> Result<(), PickleError> {
        match op {
            Op::Proto => {
                let v = self.u8(op, at)?;
                if v > 5 {
                    return Err(PickleError::Protocol {
                        offset: at,
                        version: v,
                    });
                }
            }
            Op::Frame => {
                self.take(8, op, at)?;
            }
            Op::Mark => {
                if self.marks.len() >= MAX_MARKS {
                    return Err(PickleError::Depth {
                        offset: at,
                        what: "nested MARKs",
                        limit: MAX_MARKS,
                    });
                }
                self.marks.push(self.stack.len());
            }
            Op::Pop => {
                self.pop(op, at)?;
            }
            Op::PopMark => {
                self.pop_mark(op, at)?;
            }
            Op::Dup => {
                let v = self.top(op, at)?.clone();
                self.stack.push(v);
            }
            Op::None => self.stack.push(Value::None),
            Op::NewTrue => self.stack.push(Value::Bool(true)),
            Op::NewFalse => self.stack.push(Value::Bool(false)),
            Op::BinInt => {
                let b = self.array::<4>(op, at)?;
                self.stack
                    .push(Value::Int(i64::from(i32::from_le_bytes(b))));
            }
            Op::BinInt1 => {
                let b = self.u8(op, at)?;
                self.stack.push(Value::Int(i64::from(b)));
            }
            Op::BinInt2 => {
                let b = self.array::<2>(op, at)?;
                self.stack
                    .push(Value::Int(i64::from(u16::from_le_bytes(b))));
            }
            Op::Long1 => {
                let n = u64::from(self.u8(op, at)?);
                let v = self.long(n, op, at)?;
                self.stack.push(Value::Int(v));
            }
            Op::Long4 => {
                let n = i32::from_le_bytes(self.array::<4>(op, at)?);
                let n = u64::try_from(n).map_err(|_| PickleError::LongTooWide {
                    offset: at,
                    width: u64::MAX,
                })?;
                let v = self.long(n, op, at)?;
                self.stack.push(Value::Int(v));
            }
            Op::Int => {
                // Protocol 0 and 1 write bools as INT 00/01.
                let line = self.line(op, at)?;
                let v = match line {
                    b"00" => Value::Bool(false),
                    b"01" => Value::Bool(true),
                    _ => std::str::from_utf8(line)
                        .ok()
                        .and_then(|s| s.parse::<i64>().ok())
                        .map(Value::Int)
                        .ok_or(PickleError::LongTooWide {
                            offset: at,
                            width: line.len() as u64,
                        })?,
                };
                self.stack.push(v);
            }
            Op::BinFloat => {
                let b = self.array::<8>(op, at)?;
                self.stack.push(Value::Float(f64::from_be_bytes(b)));
            }
            Op::ShortBinUnicode | Op::BinUnicode | Op::BinUnicode8 => {
                let n = self.length(op, at)?;
                let s = self.text(n, op, at)?;
                self.stack.push(Value::Str(s));
            }
            Op::ShortBinString | Op::BinString => {
                // Python 2 `str`: torch.load decodes it as UTF-8 text.
                let n = self.length(op, at)?;
                let s = self.text(n, op, at)?;
                self.stack.push(Value::Str(s));
            }
            Op::ShortBinBytes | Op::BinBytes | Op::BinBytes8 | Op::ByteArray8 => {
                let n = self.length(op, at)?;
                let b = self.take(n, op, at)?;
                self.stack.push(Value::Bytes(Rc::from(b)));
            }
            Op::EmptyTuple => self.new_container(Obj::Tuple(Vec::new()), at)?,
            Op::Tuple1 | Op::Tuple2 | Op::Tuple3 => {
                let n = match op {
                    Op::Tuple1 => 1,
                    Op::Tuple2 => 2,
                    _ => 3,
                };
                let floor = self.floor();
                if self.stack.len() < floor + n {
                    return Err(PickleError::StackUnderflow {
                        offset: at,
                        opcode: op.name(),
                    });
                }
                let items = self.stack.split_off(self.stack.len() - n);
                self.new_items(Obj::Tuple, items, at)?;
            }
            Op::Tuple => {
                let items = self.pop_mark(op, at)?;
                self.new_items(Obj::Tuple, items, at)?;
            }
            Op::EmptyList => self.new_container(Obj::List(Vec::new()), at)?,
            Op::List => {
                let items = self.pop_mark(op, at)?;
                self.new_items(Obj::List, items, at)?;
            }
            Op::EmptyDict => self.new_container(Obj::Dict(Dict::default()), at)?,
            Op::Dict => {
                let items = self.pop_mark(op, at)?;
                self.new_container(Obj::Dict(Dict::default()), at)?;
                let id = self.top_ref(op, at)?;
                self.set_items(id, items, op, at)?;
            }
            Op::Append => {
                let v = self.pop(op, at)?;
                let id = self.top_ref(op, at)?;
                self.append(id, vec![v], op, at)?;
            }
            Op::Appends => {
                let items = self.pop_mark(op, at)?;
                let id = self.top_ref(op, at)?;
                self.append(id, items, op, at)?;
            }
            Op::SetItem => {
                let v = self.pop(op, at)?;
                let k = self.pop(op, at)?;
                let id = self.top_ref(op, at)?;
                self.set_items(id, vec![k, v], op, at)?;
            }
            Op::SetItems => {
                let items = self.pop_mark(op, at)?;
                let id = self.top_ref(op, at)?;
                self.set_items(id, items, op, at)?;
            }
            Op::BinPut => {
                let k = u64::from(self.u8(op, at)?);
                self.put(k, op, at)?;
            }
            Op::LongBinPut => {
                let k = u64::from(u32::from_le_bytes(self.array::<4>(op, at)?));
                self.put(k, op, at)?;
            }
            Op::Memoize => {
                let k = self.memo.len() as u64;
                self.put(k, op, at)?;
            }
            Op::Put => {
                let k = self.decimal(op, at)?;
                self.put(k, op, at)?;
            }
            Op::BinGet => {
                let k = u64::from(self.u8(op, at)?);
                self.get(k, at)?;
            }
            Op::LongBinGet => {
                let k = u64::from(u32::from_le_bytes(self.array::<4>(op, at)?));
                self.get(k, at)?;
            }
            Op::Get => {
                let k = self.decimal(op, at)?;
                self.get(k, at)?;
            }
            Op::Global => {
                let module = self.global_line(op, at)?;
                let name = self.global_line(op, at)?;
                let g = allowlist::resolve(&module, &name, self.mode, at)?;
                self.stack.push(Value::Global(g));
            }
            Op::StackGlobal => {
                let name = self.pop(op, at)?;
                let module = self.pop(op, at)?;
                let (Some(module), Some(name)) = (module.as_str(), name.as_str()) else {
                    return Err(PickleError::WrongType {
                        offset: at,
                        opcode: op.name(),
                        expected: "two strings",
                        found: format!(
                            "{} and {}",
                            module.describe(&self.heap),
                            name.describe(&self.heap)
                        ),
                    });
                };
                let g = allowlist::resolve(module, name, self.mode, at)?;
                self.stack.push(Value::Global(g));
            }
            Op::Reduce => {
                let args = self.pop(op, at)?;
                let callable = self.pop(op, at)?;
                let Value::Global(g) = callable else {
                    return Err(self.wrong_type(op, at, "an allowed global", &callable));
                };
                let args = match self.heap.deref(&args) {
                    Some(Obj::Tuple(items)) => items.clone(),
                    _ => return Err(self.wrong_type(op, at, "an argument tuple", &args)),
                };
                let v = allowlist::call(&g, &args, &mut self.heap, at)?;
                self.count(1, at)?;
                self.check_weight(self.heap.weight(&v), at)?;
                self.stack.push(v);
            }
            Op::NewObj => {
                let args = self.pop(op, at)?;
                let cls = self.pop(op, at)?;
                let args = match self.heap.deref(&args) {
                    Some(Obj::Tuple(items)) => items.clone(),
                    _ => return Err(self.wrong_type(op, at, "an argument tuple", &args)),
                };
                match &cls {
                    Value::Global(g @ Global::TsClass(_)) => {
                        let v = allowlist::call(g, &args, &mut self.heap, at)?;
                        self.count(1, at)?;
                        self.stack.push(v);
                    }
                    _ => return Err(self.wrong_type(op, at, "a TorchScript class", &cls)),
                }
            }
            Op::Build => {
                let state = self.pop(op, at)?;
                let id = self.top_ref(op, at)?;
                let state_is_dict = matches!(self.heap.deref(&state), Some(Obj::Dict(_)));
                let w = self.heap.weight(&state);
                let found = self.heap.get(id).map(Obj::describe).unwrap_or_default();
                match self.heap.get_mut(id) {
                    // OrderedDict state dicts carry `_metadata` as an attribute.
                    Some(Obj::Dict(d)) if state_is_dict && d.attrs.is_none() => {
                        d.attrs = Some(state);
                    }
                    Some(Obj::Object {
                        state: s @ None, ..
                    }) => *s = Some(state),
                    _ => {
                        return Err(PickleError::WrongType {
                            offset: at,
                            opcode: op.name(),
                            expected: "a dict (with a dict state) or a TorchScript object",
                            found,
                        });
                    }
                }
                self.check_weight(self.heap.weight(&Value::Ref(id)).saturating_add(w), at)?;
                self.heap.add_weight(id, w);
            }
            Op::BinPersId => {
                let pid = self.pop(op, at)?;
                let v = self.persistent_load(&pid, at)?;
                self.stack.push(v);
            }
            Op::PersId
            | Op::Inst
            | Op::Obj
            | Op::Ext1
            | Op::Ext2
            | Op::Ext4
            | Op::NewObjEx
            | Op::EmptySet
            | Op::AddItems
            | Op::FrozenSet
            | Op::NextBuffer
            | Op::ReadonlyBuffer
            | Op::Float
            | Op::Long
            | Op::String
            | Op::Unicode => {
                return Err(PickleError::RefusedOpcode {
                    offset: at,
                    opcode: op.name(),
                });
            }
            Op::Stop => {}
        }
        Ok(())
    }

    // --- reading arguments -------------------------------------------------

    fn take(&mut self, n: usize, op: Op, at: usize) -> Result<&'a [u8], PickleError> {
        let truncated = PickleError::Truncated {
            offset: at,
            opcode: op.name(),
        };
        let end = self.pos.checked_add(n).ok_or(truncated.clone())?;
        let s = self.data.get(self.pos..end).ok_or(truncated)?;
        self.pos = end;
        Ok(s)
    }

    fn array<const N: usize>(&mut self, op: Op, at: usize) -> Result<[u8; N], PickleError> {
        let s = self.take(N, op, at)?;
        let mut a = [0u8; N];
        a.copy_from_slice(s);
        Ok(a)
    }

    fn u8(&mut self, op: Op, at: usize) -> Result<u8, PickleError> {
        Ok(self.array::<1>(op, at)?[0])
    }

    /// The length prefix of a string or bytes opcode, checked against what is left.
    fn length(&mut self, op: Op, at: usize) -> Result<usize, PickleError> {
        let n = match op {
            Op::ShortBinUnicode | Op::ShortBinString | Op::ShortBinBytes => {
                u64::from(self.u8(op, at)?)
            }
            Op::BinUnicode | Op::BinBytes => u64::from(u32::from_le_bytes(self.array(op, at)?)),
            Op::BinString => {
                let n = i32::from_le_bytes(self.array(op, at)?);
                u64::try_from(n).map_err(|_| PickleError::Truncated {
                    offset: at,
                    opcode: op.name(),
                })?
            }
            _ => u64::from_le_bytes(self.array(op, at)?),
        };
        let left = self.data.len().saturating_sub(self.pos) as u64;
        if n > left {
            return Err(PickleError::Truncated {
                offset: at,
                opcode: op.name(),
            });
        }
        usize::try_from(n).map_err(|_| PickleError::Truncated {
            offset: at,
            opcode: op.name(),
        })
    }

    fn text(&mut self, n: usize, op: Op, at: usize) -> Result<Rc<str>, PickleError> {
        let b = self.take(n, op, at)?;
        std::str::from_utf8(b)
            .map(Rc::from)
            .map_err(|_| PickleError::BadUtf8 {
                offset: at,
                opcode: op.name(),
            })
    }

    fn long(&mut self, n: u64, op: Op, at: usize) -> Result<i64, PickleError> {
        if n > 8 {
            return Err(PickleError::LongTooWide {
                offset: at,
                width: n,
            });
        }
        let b = self.take(n as usize, op, at)?;
        let mut buf = match b.last() {
            Some(&last) if last & 0x80 != 0 => [0xffu8; 8],
            _ => [0u8; 8],
        };
        buf.get_mut(..b.len())
            .ok_or(PickleError::LongTooWide {
                offset: at,
                width: n,
            })?
            .copy_from_slice(b);
        Ok(i64::from_le_bytes(buf))
    }

    fn line(&mut self, op: Op, at: usize) -> Result<&'a [u8], PickleError> {
        let rest = self.data.get(self.pos..).unwrap_or_default();
        let window = rest.get(..MAX_GLOBAL_LINE + 1).unwrap_or(rest);
        let n = window
            .iter()
            .position(|&b| b == b'\n')
            .ok_or(PickleError::Truncated {
                offset: at,
                opcode: op.name(),
            })?;
        let s = self.take(n + 1, op, at)?;
        Ok(s.get(..n).unwrap_or_default())
    }

    fn global_line(&mut self, op: Op, at: usize) -> Result<String, PickleError> {
        let line = self.line(op, at)?;
        std::str::from_utf8(line)
            .map(str::to_owned)
            .map_err(|_| PickleError::BadUtf8 {
                offset: at,
                opcode: op.name(),
            })
    }

    fn decimal(&mut self, op: Op, at: usize) -> Result<u64, PickleError> {
        let line = self.line(op, at)?;
        std::str::from_utf8(line)
            .ok()
            .and_then(|s| s.parse::<u64>().ok())
            .ok_or(PickleError::WrongType {
                offset: at,
                opcode: op.name(),
                expected: "a decimal memo key",
                found: String::from_utf8_lossy(line).into_owned(),
            })
    }

    // --- the stack ---------------------------------------------------------

    /// Values below the innermost MARK belong to an outer frame and cannot be popped.
    fn floor(&self) -> usize {
        self.marks.last().copied().unwrap_or(0)
    }

    fn pop(&mut self, op: Op, at: usize) -> Result<Value, PickleError> {
        if self.stack.len() <= self.floor() {
            return Err(PickleError::StackUnderflow {
                offset: at,
                opcode: op.name(),
            });
        }
        self.stack.pop().ok_or(PickleError::StackUnderflow {
            offset: at,
            opcode: op.name(),
        })
    }

    fn top(&self, op: Op, at: usize) -> Result<&Value, PickleError> {
        if self.stack.len() <= self.floor() {
            return Err(PickleError::StackUnderflow {
                offset: at,
                opcode: op.name(),
            });
        }
        self.stack.last().ok_or(PickleError::StackUnderflow {
            offset: at,
            opcode: op.name(),
        })
    }

    /// The top of the stack as a heap object id (the target of APPEND, SETITEM, BUILD).
    fn top_ref(&self, op: Op, at: usize) -> Result<ObjId, PickleError> {
        match self.top(op, at)? {
            Value::Ref(id) => Ok(*id),
            other => Err(self.wrong_type(op, at, "a container", other)),
        }
    }

    fn pop_mark(&mut self, op: Op, at: usize) -> Result<Vec<Value>, PickleError> {
        let m = self.marks.pop().ok_or(PickleError::NoMark {
            offset: at,
            opcode: op.name(),
        })?;
        if m > self.stack.len() {
            return Err(PickleError::StackUnderflow {
                offset: at,
                opcode: op.name(),
            });
        }
        Ok(self.stack.split_off(m))
    }

    fn wrong_type(&self, op: Op, at: usize, expected: &'static str, v: &Value) -> PickleError {
        PickleError::WrongType {
            offset: at,
            opcode: op.name(),
            expected,
            found: v.describe(&self.heap),
        }
    }

    // --- containers and the budget -----------------------------------------

    /// Counts values created: bounds the heap, whatever the sharing.
    fn count(&mut self, n: usize, at: usize) -> Result<(), PickleError> {
        self.created = self.created.saturating_add(n as u64);
        if self.created > MAX_CREATED {
            return Err(PickleError::Budget {
                offset: at,
                limit: MAX_CREATED,
            });
        }
        Ok(())
    }

    /// Bounds one object's expanded size: what memo sharing multiplies.
    fn check_weight(&self, weight: u64, at: usize) -> Result<(), PickleError> {
        if weight > MAX_EXPANDED {
            return Err(PickleError::Budget {
                offset: at,
                limit: MAX_EXPANDED,
            });
        }
        Ok(())
    }

    fn new_container(&mut self, obj: Obj, at: usize) -> Result<(), PickleError> {
        self.count(1, at)?;
        let v = self.heap.alloc(obj, 1);
        self.stack.push(v);
        Ok(())
    }

    fn new_items(
        &mut self,
        make: fn(Vec<Value>) -> Obj,
        items: Vec<Value>,
        at: usize,
    ) -> Result<(), PickleError> {
        let w = items
            .iter()
            .fold(1u64, |acc, v| acc.saturating_add(self.heap.weight(v)));
        self.count(items.len() + 1, at)?;
        self.check_weight(w, at)?;
        let v = self.heap.alloc(make(items), w);
        self.stack.push(v);
        Ok(())
    }

    fn append(
        &mut self,
        id: ObjId,
        items: Vec<Value>,
        op: Op,
        at: usize,
    ) -> Result<(), PickleError> {
        let w = items
            .iter()
            .fold(0u64, |acc, v| acc.saturating_add(self.heap.weight(v)));
        self.count(items.len(), at)?;
        self.check_weight(self.heap.weight(&Value::Ref(id)).saturating_add(w), at)?;
        let found = self.heap.get(id).map(Obj::describe).unwrap_or_default();
        match self.heap.get_mut(id) {
            Some(Obj::List(list)) => list.extend(items),
            _ => {
                return Err(PickleError::WrongType {
                    offset: at,
                    opcode: op.name(),
                    expected: "a list",
                    found,
                });
            }
        }
        self.heap.add_weight(id, w);
        Ok(())
    }

    fn set_items(
        &mut self,
        id: ObjId,
        items: Vec<Value>,
        op: Op,
        at: usize,
    ) -> Result<(), PickleError> {
        if !items.len().is_multiple_of(2) {
            return Err(PickleError::StackUnderflow {
                offset: at,
                opcode: op.name(),
            });
        }
        let w = items
            .iter()
            .fold(0u64, |acc, v| acc.saturating_add(self.heap.weight(v)));
        self.count(items.len(), at)?;
        self.check_weight(self.heap.weight(&Value::Ref(id)).saturating_add(w), at)?;
        let found = self.heap.get(id).map(Obj::describe).unwrap_or_default();
        let Some(Obj::Dict(_)) = self.heap.get(id) else {
            return Err(PickleError::WrongType {
                offset: at,
                opcode: op.name(),
                expected: "a dict",
                found,
            });
        };
        let mut it = items.into_iter();
        while let (Some(k), Some(v)) = (it.next(), it.next()) {
            let shown = k.describe(&self.heap);
            let inserted = match self.heap.get_mut(id) {
                Some(Obj::Dict(d)) => d.insert(k, v),
                _ => false,
            };
            if !inserted {
                return Err(PickleError::DuplicateKey {
                    offset: at,
                    key: shown,
                });
            }
        }
        self.heap.add_weight(id, w);
        Ok(())
    }

    fn put(&mut self, key: u64, op: Op, at: usize) -> Result<(), PickleError> {
        let v = self.top(op, at)?.clone();
        self.memo.insert(key, v);
        Ok(())
    }

    fn get(&mut self, key: u64, at: usize) -> Result<(), PickleError> {
        let v = self
            .memo
            .get(&key)
            .cloned()
            .ok_or(PickleError::MemoMissing { offset: at, key })?;
        self.stack.push(v);
        Ok(())
    }

    // --- persistent ids ----------------------------------------------------

    /// Resolves `('storage', StorageType, key, location, numel[, view_metadata])`.
    fn persistent_load(&mut self, pid: &Value, at: usize) -> Result<Value, PickleError> {
        let bad = |reason: String| PickleError::BadPersistentId { offset: at, reason };
        let items = match self.heap.deref(pid) {
            Some(Obj::Tuple(items)) => items.clone(),
            _ => {
                return Err(bad(format!(
                    "is {}, expected a tuple ('storage', StorageType, key, location, numel)",
                    pid.describe(&self.heap)
                )));
            }
        };
        let shape = "expected ('storage', StorageType, key, location, numel)";
        let [tag, ty, key, location, numel, rest @ ..] = items.as_slice() else {
            return Err(bad(format!("has {} items, {shape}", items.len())));
        };
        if tag.as_str() != Some("storage") {
            return Err(bad(format!(
                "starts with {}, {shape}",
                tag.describe(&self.heap)
            )));
        }
        let ty = match ty {
            Value::Global(Global::Storage(t)) => *t,
            other => {
                return Err(bad(format!(
                    "names {} as its storage type, {shape}",
                    other.describe(&self.heap)
                )));
            }
        };
        let key = match key {
            Value::Str(s) => s.clone(),
            other => {
                return Err(bad(format!(
                    "has key {}, expected a string",
                    other.describe(&self.heap)
                )));
            }
        };
        if key.is_empty()
            || key.len() > MAX_KEY_LEN
            || !key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
        {
            return Err(PickleError::BadStorageKey {
                offset: at,
                key: key.to_string(),
            });
        }
        if location.as_str().is_none() {
            return Err(bad(format!(
                "has location {}, expected a string such as 'cpu'",
                location.describe(&self.heap)
            )));
        }
        let numel = match numel {
            Value::Int(n) if *n >= 0 => *n as u64,
            other => {
                return Err(bad(format!(
                    "has element count {}, expected a non-negative int",
                    other.describe(&self.heap)
                )));
            }
        };
        match rest {
            [] | [Value::None] => {}
            [_] => {
                return Err(bad(format!(
                    "of storage `{key}` carries legacy view metadata (storage views are not supported)"
                )));
            }
            _ => return Err(bad(format!("has {} items, {shape}", items.len()))),
        }
        let storage = StorageRef {
            key: key.clone(),
            ty,
            numel,
        };
        if let Some(&id) = self.storages.get(&key) {
            return match self.heap.get(id) {
                Some(Obj::Storage(s)) if *s == storage => Ok(Value::Ref(id)),
                _ => Err(bad(format!(
                    "declares storage `{key}` again with a different type or size"
                ))),
            };
        }
        self.count(1, at)?;
        let v = self.heap.alloc(Obj::Storage(storage), 1);
        if let Value::Ref(id) = v {
            self.storages.insert(key, id);
        }
        Ok(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(bytes: &[u8]) -> Result<Parsed, PickleError> {
        parse_exact(bytes, Mode::Checkpoint)
    }

    #[test]
    fn scalars_and_containers() {
        // {'a': (1, -2, 3.5, 'x', None, True), 'b': [300, 2**40]}
        let mut p = vec![0x80, 2, b'}', b'q', 0, b'(', b'X', 1, 0, 0, 0, b'a'];
        p.extend([b'(', b'K', 1, b'J']);
        p.extend((-2i32).to_le_bytes());
        p.push(b'G');
        p.extend(3.5f64.to_be_bytes());
        p.extend([b'X', 1, 0, 0, 0, b'x', b'N', 0x88, b't']);
        p.extend([b'X', 1, 0, 0, 0, b'b', b']', b'(', b'M', 0x2c, 0x01]);
        p.extend([0x8a, 6, 0, 0, 0, 0, 0, 1, b'e', b'u', b'.']);
        let parsed = run(&p).unwrap();
        let Some(Obj::Dict(d)) = parsed.heap.deref(&parsed.root) else {
            panic!("not a dict")
        };
        assert_eq!(d.entries.len(), 2);
        let Some(Obj::List(l)) = d.get_str("b").and_then(|v| parsed.heap.deref(v)) else {
            panic!("b is not a list")
        };
        assert_eq!(l, &vec![Value::Int(300), Value::Int(1 << 40)]);
    }

    #[test]
    fn negative_long1() {
        let parsed = run(&[0x80, 2, 0x8a, 2, 0x00, 0xff, b'.']).unwrap();
        assert_eq!(parsed.root, Value::Int(-256));
    }

    #[test]
    fn stack_below_a_mark_is_out_of_reach() {
        let err = run(b"N(0.").unwrap_err();
        assert!(
            matches!(err, PickleError::StackUnderflow { offset: 2, .. }),
            "{err}"
        );
    }
}
