//! The values a pickle builds: scalars inline, containers in a heap addressed
//! by index.
//!
//! Containers live in one `Vec` and refer to each other by [`ObjId`], so a
//! pickle that nests a million tuples or makes a list contain itself costs no
//! Rust recursion to build or to drop, and sharing through the memo costs one
//! index rather than a copy. Each object records its *weight* — the size of its
//! tree if every reference were expanded — so that memo amplification is
//! caught while the pickle runs (see [`crate::pickle`]).

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::rc::Rc;

use crate::storage::{StorageRef, TensorSpec};

/// Index of an object in a [`Heap`].
pub(crate) type ObjId = usize;

/// A pickle value. Cheap to clone: containers are indices into the heap.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Value {
    /// Python `None`.
    None,
    /// `True` / `False`.
    Bool(bool),
    /// An integer that fits in 64 bits (wider ones are refused).
    Int(i64),
    /// A float.
    Float(f64),
    /// A text string.
    Str(Rc<str>),
    /// A byte string.
    Bytes(Rc<[u8]>),
    /// A container or a tensor in the heap.
    Ref(ObjId),
    /// An allowlisted global, not yet applied.
    Global(crate::allowlist::Global),
}

impl Value {
    /// A short description for error messages.
    pub(crate) fn describe(&self, heap: &Heap) -> String {
        match self {
            Value::None => "None".into(),
            Value::Bool(b) => if *b { "True" } else { "False" }.into(),
            Value::Int(i) => format!("int {i}"),
            Value::Float(f) => format!("float {f}"),
            Value::Str(s) => format!("str {:?}", truncate(s, 40)),
            Value::Bytes(b) => format!("bytes of length {}", b.len()),
            Value::Ref(id) => heap
                .get(*id)
                .map_or_else(|| "a dangling reference".into(), Obj::describe),
            Value::Global(g) => format!("global `{}`", g.qualified_name()),
        }
    }

    /// The string, if this is one.
    pub(crate) fn as_str(&self) -> Option<&str> {
        match self {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }
}

fn truncate(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_owned()
    } else {
        let mut t: String = s.chars().take(n).collect();
        t.push('…');
        t
    }
}

/// A dict key in a form that can be hashed: what duplicate detection compares.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum DictKey {
    None,
    Int(i64),
    Float(u64),
    Str(Rc<str>),
    Bytes(Rc<[u8]>),
}

impl DictKey {
    fn of(v: &Value) -> Option<DictKey> {
        Some(match v {
            Value::None => DictKey::None,
            // Python hashes True as 1: treat them as the same key.
            Value::Bool(b) => DictKey::Int(i64::from(*b)),
            Value::Int(i) => DictKey::Int(*i),
            Value::Float(f) => DictKey::Float(f.to_bits()),
            Value::Str(s) => DictKey::Str(s.clone()),
            Value::Bytes(b) => DictKey::Bytes(b.clone()),
            // Tuples and objects as keys never occur in checkpoints; they are
            // kept but not checked for duplicates.
            Value::Ref(_) | Value::Global(_) => return None,
        })
    }
}

/// A dict (or OrderedDict) in insertion order, refusing a key set twice.
#[derive(Debug, Default)]
pub(crate) struct Dict {
    /// Entries in insertion order.
    pub entries: Vec<(Value, Value)>,
    index: HashMap<DictKey, usize>,
    /// The instance attributes BUILD gave it (an OrderedDict's `_metadata`).
    pub attrs: Option<Value>,
}

impl Dict {
    /// Inserts a key; returns `false` when the key is already present.
    pub(crate) fn insert(&mut self, key: Value, value: Value) -> bool {
        if let Some(k) = DictKey::of(&key) {
            match self.index.entry(k) {
                Entry::Occupied(_) => return false,
                Entry::Vacant(e) => {
                    e.insert(self.entries.len());
                }
            }
        }
        self.entries.push((key, value));
        true
    }

    /// The value of a string key.
    pub(crate) fn get_str(&self, key: &str) -> Option<&Value> {
        let i = self.index.get(&DictKey::Str(Rc::from(key)))?;
        self.entries.get(*i).map(|(_, v)| v)
    }
}

/// An object of the heap.
#[derive(Debug)]
pub(crate) enum Obj {
    /// An immutable tuple.
    Tuple(Vec<Value>),
    /// A list.
    List(Vec<Value>),
    /// A dict or OrderedDict.
    Dict(Dict),
    /// An inert TorchScript object: its class name and the state BUILD gave it.
    Object {
        /// `module.Class`, e.g. `__torch__.torch.nn.modules.conv.Conv2d`.
        class: Rc<str>,
        /// The state, normally a dict of attributes.
        state: Option<Value>,
    },
    /// A storage, resolved from a persistent id.
    Storage(StorageRef),
    /// A tensor: a view of a storage, not yet read.
    Tensor(TensorSpec),
}

impl Obj {
    /// A short description for error messages.
    pub(crate) fn describe(&self) -> String {
        match self {
            Obj::Tuple(v) => format!("a tuple of {} items", v.len()),
            Obj::List(v) => format!("a list of {} items", v.len()),
            Obj::Dict(d) => format!("a dict of {} items", d.entries.len()),
            Obj::Object { class, .. } => format!("an object of class `{class}`"),
            Obj::Storage(s) => format!("storage `{}`", s.key),
            Obj::Tensor(_) => "a tensor".into(),
        }
    }

    /// The kind, without sizes.
    pub(crate) fn kind(&self) -> &'static str {
        match self {
            Obj::Tuple(_) => "tuple",
            Obj::List(_) => "list",
            Obj::Dict(_) => "dict",
            Obj::Object { .. } => "object",
            Obj::Storage(_) => "storage",
            Obj::Tensor(_) => "tensor",
        }
    }
}

/// All objects a pickle built, with their expanded weights.
#[derive(Debug, Default)]
pub(crate) struct Heap {
    objs: Vec<(Obj, u64)>,
}

impl Heap {
    /// The object behind an id.
    pub(crate) fn get(&self, id: ObjId) -> Option<&Obj> {
        self.objs.get(id).map(|(o, _)| o)
    }

    /// The object behind an id, mutably.
    pub(crate) fn get_mut(&mut self, id: ObjId) -> Option<&mut Obj> {
        self.objs.get_mut(id).map(|(o, _)| o)
    }

    /// The object a value refers to, if it is a reference.
    pub(crate) fn deref(&self, v: &Value) -> Option<&Obj> {
        match v {
            Value::Ref(id) => self.get(*id),
            _ => None,
        }
    }

    /// The object an optional value refers to (for argument lists).
    pub(crate) fn deref_opt(&self, v: Option<&Value>) -> Option<&Obj> {
        v.and_then(|v| self.deref(v))
    }

    /// The expanded weight of a value: 1 for scalars, the tree size for containers.
    pub(crate) fn weight(&self, v: &Value) -> u64 {
        match v {
            Value::Ref(id) => self.objs.get(*id).map_or(1, |(_, w)| *w),
            _ => 1,
        }
    }

    /// Adds an object of a given weight and returns a reference to it.
    pub(crate) fn alloc(&mut self, obj: Obj, weight: u64) -> Value {
        self.objs.push((obj, weight));
        Value::Ref(self.objs.len() - 1)
    }

    /// Adds `delta` to an object's weight (after items were added to it).
    pub(crate) fn add_weight(&mut self, id: ObjId, delta: u64) {
        if let Some((_, w)) = self.objs.get_mut(id) {
            *w = w.saturating_add(delta);
        }
    }

    /// Every object, for passes that look at all storages.
    pub(crate) fn iter(&self) -> impl Iterator<Item = &Obj> {
        self.objs.iter().map(|(o, _)| o)
    }
}
