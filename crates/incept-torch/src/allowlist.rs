//! The exact `(module, name)` globals a checkpoint pickle may name, and our own
//! interpretation of each one when the pickle applies it.
//!
//! This is an allowlist, not a denylist: a global is matched by its whole
//! module and name, so `builtins.eval`, `posix.system` and dotted tricks such as
//! `print.__class__.__base__` are refused because they are not listed. Nothing
//! is imported and nothing is called: each allowed callable is a variant whose
//! arguments are checked for arity and type, then turned into a value by the
//! code below.

use std::rc::Rc;

use crate::error::PickleError;
use crate::storage::{StorageType, TensorSpec};
use crate::value::{Dict, Heap, Obj, Value};

/// Which pickle is being read: TorchScript archives name their own classes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Mode {
    /// `torch.save` (zip or legacy): only the checkpoint allowlist.
    Checkpoint,
    /// `torch.jit.save`: also `__torch__.*` classes (as inert objects) and
    /// `torch.jit._pickle` list builders.
    TorchScript,
}

/// An allowed global.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Global {
    /// `torch._utils._rebuild_tensor_v2`.
    RebuildTensorV2,
    /// `torch._utils._rebuild_tensor` (legacy streams).
    RebuildTensor,
    /// `torch._utils._rebuild_parameter`.
    RebuildParameter,
    /// `torch._utils._rebuild_parameter_with_state`.
    RebuildParameterWithState,
    /// A storage class; only valid inside a persistent id.
    Storage(StorageType),
    /// `collections.OrderedDict`.
    OrderedDict,
    /// `torch.Size`.
    Size,
    /// `torch.device`.
    Device,
    /// `torch.jit._pickle.build_{int,double,bool,tensor}list` (TorchScript only).
    TsListBuilder(&'static str),
    /// `torch.jit._pickle.restore_type_tag` (TorchScript only).
    TsRestoreTypeTag,
    /// A `__torch__.*` class of a TorchScript archive, built as an inert object.
    TsClass(Rc<str>),
}

impl Global {
    /// `module.name` as the pickle wrote it.
    pub(crate) fn qualified_name(&self) -> String {
        match self {
            Global::RebuildTensorV2 => "torch._utils._rebuild_tensor_v2".into(),
            Global::RebuildTensor => "torch._utils._rebuild_tensor".into(),
            Global::RebuildParameter => "torch._utils._rebuild_parameter".into(),
            Global::RebuildParameterWithState => {
                "torch._utils._rebuild_parameter_with_state".into()
            }
            Global::Storage(t) => t.class_name().into(),
            Global::OrderedDict => "collections.OrderedDict".into(),
            Global::Size => "torch.Size".into(),
            Global::Device => "torch.device".into(),
            Global::TsListBuilder(n) => format!("torch.jit._pickle.{n}"),
            Global::TsRestoreTypeTag => "torch.jit._pickle.restore_type_tag".into(),
            Global::TsClass(c) => c.to_string(),
        }
    }
}

/// Every global the checkpoint mode accepts, as `(module, name)`: for docs and tests.
pub const ALLOWED_GLOBALS: &[(&str, &str)] = &[
    ("torch._utils", "_rebuild_tensor_v2"),
    ("torch._utils", "_rebuild_tensor"),
    ("torch._utils", "_rebuild_parameter"),
    ("torch._utils", "_rebuild_parameter_with_state"),
    ("collections", "OrderedDict"),
    ("torch", "Size"),
    ("torch", "device"),
    ("torch", "FloatStorage"),
    ("torch", "HalfStorage"),
    ("torch", "BFloat16Storage"),
    ("torch", "DoubleStorage"),
    ("torch", "LongStorage"),
    ("torch", "IntStorage"),
    ("torch", "ShortStorage"),
    ("torch", "CharStorage"),
    ("torch", "ByteStorage"),
    ("torch", "BoolStorage"),
    ("torch", "UntypedStorage"),
    ("torch.storage", "UntypedStorage"),
];

/// Resolves a GLOBAL / STACK_GLOBAL against the allowlist.
pub(crate) fn resolve(
    module: &str,
    name: &str,
    mode: Mode,
    offset: usize,
) -> Result<Global, PickleError> {
    if let Some(t) = StorageType::from_global(module, name) {
        return Ok(Global::Storage(t));
    }
    let g = match (module, name) {
        ("torch._utils", "_rebuild_tensor_v2") => Some(Global::RebuildTensorV2),
        ("torch._utils", "_rebuild_tensor") => Some(Global::RebuildTensor),
        ("torch._utils", "_rebuild_parameter") => Some(Global::RebuildParameter),
        ("torch._utils", "_rebuild_parameter_with_state") => {
            Some(Global::RebuildParameterWithState)
        }
        ("collections", "OrderedDict") => Some(Global::OrderedDict),
        ("torch", "Size") => Some(Global::Size),
        ("torch", "device") => Some(Global::Device),
        _ => None,
    };
    if let Some(g) = g {
        return Ok(g);
    }
    if mode == Mode::TorchScript {
        match (module, name) {
            (
                "torch.jit._pickle",
                n @ ("build_intlist" | "build_doublelist" | "build_boollist" | "build_tensorlist"),
            ) => {
                let n: &'static str = match n {
                    "build_intlist" => "build_intlist",
                    "build_doublelist" => "build_doublelist",
                    "build_boollist" => "build_boollist",
                    _ => "build_tensorlist",
                };
                return Ok(Global::TsListBuilder(n));
            }
            ("torch.jit._pickle", "restore_type_tag") => return Ok(Global::TsRestoreTypeTag),
            _ => {}
        }
        if (module == "__torch__" || module.starts_with("__torch__.")) && is_identifier(name) {
            return Ok(Global::TsClass(Rc::from(format!("{module}.{name}"))));
        }
    }
    let is_module_class = ["torch.nn.", "torchvision.", "__torch__"]
        .iter()
        .any(|p| module.starts_with(p));
    if is_module_class {
        return Err(PickleError::WholeModule {
            offset,
            module: module.to_owned(),
            name: name.to_owned(),
        });
    }
    Err(PickleError::RefusedGlobal {
        offset,
        module: module.to_owned(),
        name: name.to_owned(),
    })
}

fn is_identifier(s: &str) -> bool {
    !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Applies an allowed callable (REDUCE) to its arguments.
pub(crate) fn call(
    global: &Global,
    args: &[Value],
    heap: &mut Heap,
    offset: usize,
) -> Result<Value, PickleError> {
    let misuse = |heap: &Heap, expected: &str| PickleError::Misuse {
        offset,
        callable: global.qualified_name(),
        expected: expected.to_owned(),
        found: describe_args(args, heap),
    };
    match global {
        Global::RebuildTensorV2 | Global::RebuildTensor => {
            let expected = if *global == Global::RebuildTensor {
                "(storage, offset: int, size: tuple, stride: tuple)"
            } else {
                "(storage, offset: int, size: tuple, stride: tuple, requires_grad: bool, backward_hooks: dict[, metadata])"
            };
            let arity_ok = match global {
                Global::RebuildTensor => args.len() == 4,
                _ => args.len() == 6 || args.len() == 7,
            };
            if !arity_ok {
                return Err(misuse(heap, expected));
            }
            let (Some(storage), Some(off), Some(size), Some(stride)) =
                (args.first(), args.get(1), args.get(2), args.get(3))
            else {
                return Err(misuse(heap, expected));
            };
            let storage = match storage {
                Value::Ref(id) if matches!(heap.get(*id), Some(Obj::Storage(_))) => *id,
                _ => return Err(misuse(heap, expected)),
            };
            let Value::Int(off) = off else {
                return Err(misuse(heap, expected));
            };
            let (Some(size), Some(stride)) = (int_tuple(size, heap), int_tuple(stride, heap))
            else {
                return Err(misuse(heap, expected));
            };
            if *global == Global::RebuildTensorV2 {
                let grad_ok = matches!(args.get(4), Some(Value::Bool(_)));
                let hooks_ok = matches!(heap.deref_opt(args.get(5)), Some(Obj::Dict(_)));
                let meta_ok = match args.get(6) {
                    None | Some(Value::None) => true,
                    Some(v) => matches!(heap.deref(v), Some(Obj::Dict(_))),
                };
                if !(grad_ok && hooks_ok && meta_ok) {
                    return Err(misuse(heap, expected));
                }
            }
            let weight = 1 + size.len() as u64 + stride.len() as u64;
            Ok(heap.alloc(
                Obj::Tensor(TensorSpec {
                    storage,
                    offset: *off,
                    size,
                    stride,
                }),
                weight,
            ))
        }
        Global::RebuildParameter | Global::RebuildParameterWithState => {
            let expected = if *global == Global::RebuildParameter {
                "(tensor, requires_grad: bool, backward_hooks: dict)"
            } else {
                "(tensor, requires_grad: bool, backward_hooks: dict, state: dict or tuple)"
            };
            let n = if *global == Global::RebuildParameter {
                3
            } else {
                4
            };
            if args.len() != n {
                return Err(misuse(heap, expected));
            }
            let data = args.first();
            let ok = matches!(heap.deref_opt(data), Some(Obj::Tensor(_)))
                && matches!(args.get(1), Some(Value::Bool(_)))
                && matches!(heap.deref_opt(args.get(2)), Some(Obj::Dict(_)))
                && (n == 3
                    || matches!(
                        heap.deref_opt(args.get(3)),
                        Some(Obj::Dict(_) | Obj::Tuple(_))
                    ));
            match data {
                Some(v) if ok => Ok(v.clone()),
                _ => Err(misuse(heap, expected)),
            }
        }
        Global::OrderedDict => {
            if !args.is_empty() {
                return Err(misuse(heap, "no arguments (items are added by SETITEMS)"));
            }
            Ok(heap.alloc(Obj::Dict(Dict::default()), 1))
        }
        Global::Size => {
            let expected = "(a tuple of ints)";
            let [one] = args else {
                return Err(misuse(heap, expected));
            };
            let Some(dims) = int_tuple(one, heap) else {
                return Err(misuse(heap, expected));
            };
            let w = 1 + dims.len() as u64;
            Ok(heap.alloc(Obj::Tuple(dims.into_iter().map(Value::Int).collect()), w))
        }
        Global::Device => {
            let expected = "(type: str) or (type: str, index: int)";
            match args {
                [Value::Str(s)] => Ok(Value::Str(s.clone())),
                [Value::Str(s), Value::Int(i)] => Ok(Value::Str(Rc::from(format!("{s}:{i}")))),
                _ => Err(misuse(heap, expected)),
            }
        }
        Global::TsListBuilder(_) => match args {
            [v] if matches!(heap.deref(v), Some(Obj::List(_))) => Ok(v.clone()),
            _ => Err(misuse(heap, "(a list)")),
        },
        Global::TsRestoreTypeTag => match args {
            [v, Value::Str(_)] => Ok(v.clone()),
            _ => Err(misuse(heap, "(value, type: str)")),
        },
        Global::TsClass(class) => {
            if !args.is_empty() {
                return Err(misuse(heap, "no arguments"));
            }
            Ok(heap.alloc(
                Obj::Object {
                    class: class.clone(),
                    state: None,
                },
                1,
            ))
        }
        Global::Storage(_) => Err(misuse(
            heap,
            "to appear only inside a persistent id, never called",
        )),
    }
}

fn int_tuple(v: &Value, heap: &Heap) -> Option<Vec<i64>> {
    match heap.deref(v)? {
        Obj::Tuple(items) => items
            .iter()
            .map(|x| match x {
                Value::Int(i) => Some(*i),
                _ => None,
            })
            .collect(),
        _ => None,
    }
}

fn describe_args(args: &[Value], heap: &Heap) -> String {
    let parts: Vec<String> = args.iter().take(8).map(|a| a.describe(heap)).collect();
    let more = if args.len() > 8 { ", …" } else { "" };
    format!("{} arguments ({}{more})", args.len(), parts.join(", "))
}
