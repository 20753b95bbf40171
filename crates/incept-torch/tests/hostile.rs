//! Hostile and broken inputs: each is refused with a specific error whose
//! message names the file and the thing at fault; nothing is executed and
//! nothing panics.

#![allow(clippy::unwrap_used)] // helpers outside #[test] fns fail loudly on bad fixtures

mod common;

use incept_torch::{FormatError, LegacyError, PickleError, TorchError, ViewError, ZipError};

/// Asserts the message names the file and every fragment given.
fn names(err: &TorchError, file: &str, fragments: &[&str]) {
    let msg = err.to_string();
    assert!(
        msg.starts_with(file),
        "message does not start with the file: {msg}"
    );
    for f in fragments {
        assert!(msg.contains(f), "message lacks {f:?}: {msg}");
    }
}

fn pickle_err(file: &str) -> (TorchError, PickleError) {
    let err = common::refused(file);
    let p = err
        .pickle_error()
        .unwrap_or_else(|| panic!("{file}: not a pickle error: {err}"))
        .clone();
    (err, p)
}

#[test]
fn posix_system_is_refused_and_nothing_runs() {
    // The committed fixture, and one made now whose command names this process.
    let marker = std::path::PathBuf::from(format!("/tmp/incept_pwned_{}", std::process::id()));
    let _ = std::fs::remove_file(&marker);
    let mut pkl = b"\x80\x02cposix\nsystem\n".to_vec();
    pkl.extend(common::unicode(&format!("touch {}", marker.display())));
    pkl.extend(b"\x85R.");
    let err = incept_torch::load_bytes(&common::pickle_zip(&pkl), "pwn.pth").unwrap_err();
    assert!(
        matches!(err.pickle_error(), Some(PickleError::RefusedGlobal { module, name, .. }) if module == "posix" && name == "system"),
        "{err}"
    );
    names(
        &err,
        "pwn.pth",
        &["archive/data.pkl", "posix.system", "byte 2"],
    );
    assert!(!marker.exists(), "{} was created", marker.display());

    let (err, p) = pickle_err("bad_posix_system.pth");
    assert!(matches!(p, PickleError::RefusedGlobal { .. }), "{err}");
    names(&err, "bad_posix_system.pth", &["posix.system"]);
    assert!(!std::path::Path::new("/tmp/incept_pwned_fixture").exists());
}

#[test]
fn builtins_eval_stack_global_and_dotted_names_are_refused() {
    for (file, global) in [
        ("bad_builtins_eval.pth", "builtins.eval"),
        ("bad_stack_global.pth", "os.system"),
        ("bad_dotted_global.pth", "builtins.print.__class__.__base__"),
    ] {
        let (err, p) = pickle_err(file);
        assert!(matches!(p, PickleError::RefusedGlobal { .. }), "{err}");
        names(&err, file, &[global]);
    }
}

#[test]
fn pickled_modules_are_refused_with_advice() {
    for (file, global) in [
        (
            "bad_whole_module.pth",
            "torch.nn.modules.container.Sequential",
        ),
        (
            "bad_torchvision_class.pth",
            "torchvision.models.inception.Inception3",
        ),
    ] {
        let (err, p) = pickle_err(file);
        assert!(matches!(p, PickleError::WholeModule { .. }), "{err}");
        names(&err, file, &[global, "model.state_dict()"]);
    }
}

#[test]
fn memo_amplification_is_capped() {
    let (err, p) = pickle_err("bad_memo_amplification.pth");
    assert!(matches!(p, PickleError::Budget { .. }), "{err}");
    names(&err, "bad_memo_amplification.pth", &["memo amplification"]);
}

#[test]
fn a_million_nested_marks_do_not_overflow_the_stack() {
    let mut pkl = vec![0x80, 2];
    pkl.extend(std::iter::repeat_n(b'(', 1_000_000));
    pkl.push(b'.');
    let err = incept_torch::load_bytes(&common::pickle_zip(&pkl), "marks.pth").unwrap_err();
    assert!(
        matches!(
            err.pickle_error(),
            Some(PickleError::Depth {
                what: "nested MARKs",
                ..
            })
        ),
        "{err}"
    );
    // Deeply nested tuples built within the MARK cap are fine to build and drop.
    let mut pkl = vec![0x80, 2, b')'];
    pkl.extend(std::iter::repeat_n(0x85, 200_000)); // TUPLE1
    pkl.push(b'.');
    let err = incept_torch::load_bytes(&common::pickle_zip(&pkl), "nest.pth").unwrap_err();
    assert!(
        matches!(err.format_error(), Some(FormatError::NoStateDict { .. })),
        "{err}"
    );
}

#[test]
fn malformed_pickles_name_the_offset() {
    let (err, p) = pickle_err("bad_long1_9_bytes.pth");
    assert!(
        matches!(p, PickleError::LongTooWide { width: 9, .. }),
        "{err}"
    );
    names(&err, "bad_long1_9_bytes.pth", &["9 bytes", "byte "]);

    let (err, p) = pickle_err("bad_unknown_opcode.pth");
    assert!(
        matches!(
            p,
            PickleError::UnknownOpcode {
                offset: 3,
                byte: 0xff
            }
        ),
        "{err}"
    );
    names(&err, "bad_unknown_opcode.pth", &["byte 3", "0xff"]);

    let (err, p) = pickle_err("bad_stack_underflow.pth");
    assert!(
        matches!(p, PickleError::StackUnderflow { offset: 2, .. }),
        "{err}"
    );
    names(&err, "bad_stack_underflow.pth", &["TUPLE2"]);

    let (err, p) = pickle_err("bad_memo_missing.pth");
    assert!(
        matches!(p, PickleError::MemoMissing { key: 7, .. }),
        "{err}"
    );

    let (err, p) = pickle_err("bad_missing_stop.pth");
    assert!(matches!(p, PickleError::MissingStop { offset: 3 }), "{err}");

    let (err, p) = pickle_err("bad_trailing_bytes.pth");
    assert!(
        matches!(
            p,
            PickleError::TrailingBytes {
                offset: 4,
                count: 2
            }
        ),
        "{err}"
    );
}

#[test]
fn allowed_callables_misused() {
    let (err, p) = pickle_err("bad_rebuild_arity.pth");
    assert!(
        matches!(&p, PickleError::Misuse { callable, .. } if callable == "torch._utils._rebuild_tensor_v2"),
        "{err}"
    );
    names(&err, "bad_rebuild_arity.pth", &["3 arguments"]);

    let (err, p) = pickle_err("bad_ordereddict_args.pth");
    assert!(
        matches!(&p, PickleError::Misuse { callable, .. } if callable == "collections.OrderedDict"),
        "{err}"
    );

    let (err, p) = pickle_err("bad_setitem_on_list.pth");
    assert!(
        matches!(
            p,
            PickleError::WrongType {
                opcode: "SETITEM",
                ..
            }
        ),
        "{err}"
    );

    let (err, p) = pickle_err("bad_build_on_tensor.pth");
    assert!(
        matches!(
            p,
            PickleError::WrongType {
                opcode: "BUILD",
                ..
            }
        ),
        "{err}"
    );
    names(&err, "bad_build_on_tensor.pth", &["a tensor"]);

    let (err, p) = pickle_err("bad_persistent_id.pth");
    assert!(matches!(p, PickleError::BadPersistentId { .. }), "{err}");
    names(&err, "bad_persistent_id.pth", &["'storage'"]);
}

#[test]
fn storages_and_views_are_checked_before_allocating() {
    let err = common::refused("bad_view_out_of_storage.pth");
    assert!(
        matches!(err.format_error(), Some(FormatError::View { tensor, error: ViewError::OutOfBounds { .. } }) if tensor == "w"),
        "{err}"
    );
    names(
        &err,
        "bad_view_out_of_storage.pth",
        &["tensor `w`", "storage `0`", "4 elements"],
    );

    // 2^40 f32 elements over a 16-byte blob: refused by arithmetic, not by the allocator.
    let err = common::refused("bad_huge_shape.pth");
    assert!(
        matches!(
            err.format_error(),
            Some(FormatError::View {
                error: ViewError::OutOfBounds { .. },
                ..
            })
        ),
        "{err}"
    );
    names(&err, "bad_huge_shape.pth", &["1099511627776"]);

    let err = common::refused("bad_numel_mismatch.pth");
    assert!(
        matches!(
            err.format_error(),
            Some(FormatError::StorageSize {
                numel: 10,
                expected: 40,
                found: 16,
                ..
            })
        ),
        "{err}"
    );
    names(
        &err,
        "bad_numel_mismatch.pth",
        &["storage `0`", "archive/data/0"],
    );

    let err = common::refused("bad_negative_stride.pth");
    assert!(
        matches!(
            err.format_error(),
            Some(FormatError::View {
                error: ViewError::Negative { what: "stride", .. },
                ..
            })
        ),
        "{err}"
    );

    let (err, p) = pickle_err("bad_traversal_key.pth");
    assert!(
        matches!(&p, PickleError::BadStorageKey { key, .. } if key == "../x"),
        "{err}"
    );
    names(&err, "bad_traversal_key.pth", &["../x"]);
}

#[test]
fn zip_damage() {
    let err = common::refused("bad_duplicate_entry.pth");
    assert!(
        matches!(err.zip_error(), Some(ZipError::DuplicateEntry { name }) if name == "archive/data.pkl"),
        "{err}"
    );

    let err = common::refused("bad_overlap.pth");
    assert!(
        matches!(err.zip_error(), Some(ZipError::Overlap { .. })),
        "{err}"
    );
    names(
        &err,
        "bad_overlap.pth",
        &["archive/data.pkl", "archive/version"],
    );

    let err = common::refused("bad_deflate.pth");
    assert!(
        matches!(
            err.zip_error(),
            Some(ZipError::Compressed { method: 8, .. })
        ),
        "{err}"
    );
    names(&err, "bad_deflate.pth", &["archive/data.pkl"]);

    let err = common::refused("bad_truncated.pth");
    assert!(
        matches!(err.zip_error(), Some(ZipError::NoEndRecord)),
        "{err}"
    );

    // A storage entry whose bytes were altered after the CRC was computed.
    let mut b = common::bytes("dtypes.pth");
    let at = b.windows(6).position(|w| w == b"little").unwrap();
    b[at] = b'L';
    let err = incept_torch::load_bytes(&b, "crc.pth").unwrap_err();
    assert!(
        matches!(err.zip_error(), Some(ZipError::Crc { .. })),
        "{err}"
    );
}

#[test]
fn not_a_checkpoint() {
    let err = common::refused("bad_empty.pth");
    assert!(
        matches!(err.format_error(), Some(FormatError::Empty)),
        "{err}"
    );

    let err = common::refused("bad_random.pth");
    assert!(
        matches!(err.format_error(), Some(FormatError::UnknownFormat { .. })),
        "{err}"
    );

    let err = common::refused("bad_safetensors.pth");
    assert!(
        matches!(err.format_error(), Some(FormatError::LooksLike { .. })),
        "{err}"
    );
    names(&err, "bad_safetensors.pth", &["safetensors"]);

    let err = common::refused("bad_onnx.pth");
    assert!(
        matches!(err.format_error(), Some(FormatError::LooksLike { .. })),
        "{err}"
    );
    names(&err, "bad_onnx.pth", &["ONNX"]);
}

#[test]
fn legacy_streams_go_through_the_same_allowlist() {
    let good = common::bytes("legacy.pth");
    // Magic, protocol and sys_info of a real stream, then an evil data pickle.
    let sys_info_end = {
        let mut n = 0;
        let mut cut = 0;
        for (i, &b) in good.iter().enumerate() {
            if b == b'.' {
                n += 1;
                if n == 3 {
                    cut = i + 1;
                    break;
                }
            }
        }
        cut
    };
    let mut evil = good[..sys_info_end].to_vec();
    evil.extend(b"\x80\x02cbuiltins\neval\n");
    evil.extend(common::unicode("1"));
    evil.extend(b"\x85R.");
    let err = incept_torch::load_bytes(&evil, "evil_legacy.pth").unwrap_err();
    assert!(
        matches!(err.pickle_error(), Some(PickleError::RefusedGlobal { .. })),
        "{err}"
    );
    names(
        &err,
        "evil_legacy.pth",
        &["legacy data pickle", "builtins.eval"],
    );

    // Cut inside the last storage: the count is checked against the bytes left.
    let cut = &good[..good.len() - 3];
    let err = incept_torch::load_bytes(cut, "cut_legacy.pth").unwrap_err();
    assert!(
        matches!(
            err.format_error(),
            Some(FormatError::Legacy(LegacyError::Truncated { .. }))
        ),
        "{err}"
    );
}

/// xorshift64: a deterministic stream for the fuzz tests below.
fn next(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

/// Iterations of the fuzz tests; `INCEPT_TORCH_FUZZ_ITERS` raises it for a long local run.
fn fuzz_iters(default: usize) -> usize {
    std::env::var("INCEPT_TORCH_FUZZ_ITERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A cheap, deterministic fuzz: every prefix and many byte flips of real files
/// must give an error or a checkpoint, never a panic.
#[test]
fn truncations_and_bit_flips_never_panic() {
    let iters = fuzz_iters(3000);
    for file in [
        "dtypes.pth",
        "legacy.pth",
        "views.pth",
        "big_endian.pth",
        "torchscript.pt",
    ] {
        let good = common::bytes(file);
        let step = (good.len() / 1500).max(1);
        for n in (0..good.len()).step_by(step) {
            let _ = incept_torch::load_bytes(&good[..n], file);
        }
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        for _ in 0..iters {
            let mut b = good.clone();
            for _ in 0..1 + next(&mut state) % 3 {
                let r = next(&mut state);
                let at = (r % b.len() as u64) as usize;
                b[at] ^= 1 << ((r >> 32) % 8);
            }
            let _ = incept_torch::load_bytes(&b, file);
        }
    }
}

/// Random opcode soup inside a valid zip: exercises the pickle machine's
/// every error path without the zip layer rejecting the input first.
#[test]
fn random_pickles_never_panic() {
    const ALPHABET: &[u8] =
        b"()0125IJKMNQRXabcdehjlqrstu}]G\x80\x81\x85\x86\x87\x88\x89\x8a\x8b\x8c\x93\x94\x95";
    // Pieces of real checkpoints, so that tensors and storages get built too.
    const FRAGMENTS: &[&[u8]] = &[
        b"ctorch._utils\n_rebuild_tensor_v2\n",
        b"ctorch._utils\n_rebuild_parameter\n",
        b"ccollections\nOrderedDict\n)R",
        b"(X\x07\x00\x00\x00storagectorch\nFloatStorage\nX\x01\x00\x00\x000X\x03\x00\x00\x00cpuK\x10tQ",
        b"(K\x02K\x02t",
        b"X\x01\x00\x00\x00w",
        b"\x89",
        b"c__torch__\nM\n)\x81",
    ];
    let storage = [0u8; 64];
    let mut state = 0x1234_5678_9abc_def1u64;
    for _ in 0..fuzz_iters(3000) {
        let len = 1 + (next(&mut state) % 64) as usize;
        let mut pkl = vec![0x80, 2];
        for _ in 0..len {
            let r = next(&mut state);
            if r.is_multiple_of(7) {
                pkl.extend(FRAGMENTS[((r >> 3) % FRAGMENTS.len() as u64) as usize]);
                continue;
            }
            let op = ALPHABET[(r % ALPHABET.len() as u64) as usize];
            pkl.push(op);
            // Give about half the opcodes a few argument bytes.
            if r & 0x100 != 0 {
                pkl.extend((r >> 16).to_le_bytes().iter().take(((r >> 9) % 5) as usize));
            }
        }
        pkl.push(b'.');
        let zip = common::stored_zip(&[("a/data.pkl", &pkl), ("a/data/0", &storage)]);
        let _ = incept_torch::load_bytes(&zip, "soup.pth");
    }
}

/// The messages a user sees, kept readable.
#[test]
fn error_messages() {
    let files = [
        "bad_posix_system.pth",
        "bad_whole_module.pth",
        "bad_memo_amplification.pth",
        "bad_long1_9_bytes.pth",
        "bad_view_out_of_storage.pth",
        "bad_numel_mismatch.pth",
        "bad_traversal_key.pth",
        "bad_rebuild_arity.pth",
        "bad_duplicate_entry.pth",
        "bad_safetensors.pth",
        "bad_onnx.pth",
        "bad_empty.pth",
    ];
    let text: Vec<String> = files
        .iter()
        .map(|f| common::refused(f).to_string())
        .collect();
    insta::assert_snapshot!(text.join("\n"));
}

#[test]
fn a_key_set_twice_is_refused() {
    // {'w': 1, 'w': 2} via SETITEMS: Python dicts cannot hold it, a crafted pickle can.
    let mut pkl = b"\x80\x02}(".to_vec();
    pkl.extend(common::unicode("w"));
    pkl.extend(b"K\x01");
    pkl.extend(common::unicode("w"));
    pkl.extend(b"K\x02u.");
    let err = incept_torch::load_bytes(&common::pickle_zip(&pkl), "dup.pth").unwrap_err();
    assert!(
        matches!(err.pickle_error(), Some(PickleError::DuplicateKey { .. })),
        "{err}"
    );
    names(&err, "dup.pth", &["\"w\"", "twice"]);
}

#[test]
fn torchscript_classes_are_inert_only_in_torchscript_archives() {
    let pkl = b"\x80\x02c__torch__\nM\n)\x81}b.";
    let err = incept_torch::load_bytes(&common::pickle_zip(pkl), "ts_in_zip.pth").unwrap_err();
    assert!(
        matches!(err.pickle_error(), Some(PickleError::WholeModule { .. })),
        "{err}"
    );
    // The same pickle in an archive with code/ is a module with no tensors.
    let zip = common::stored_zip(&[
        ("m/data.pkl", pkl),
        (
            "m/code/__torch__.py",
            b"import os\nos.system('touch /tmp/x')\n",
        ),
    ]);
    let err = incept_torch::load_bytes(&zip, "ts.pt").unwrap_err();
    assert!(
        matches!(err.format_error(), Some(FormatError::NoStateDict { .. })),
        "{err}"
    );
}

#[test]
fn a_checkpoint_without_a_state_dict_lists_what_it_holds() {
    let mut pkl = b"\x80\x02}(".to_vec();
    pkl.extend(common::unicode("epoch"));
    pkl.extend(b"K\x03");
    pkl.extend(common::unicode("optimizer"));
    pkl.extend(b"}u.");
    let err = incept_torch::load_bytes(&common::pickle_zip(&pkl), "nosd.pth").unwrap_err();
    assert!(
        matches!(err.format_error(), Some(FormatError::NoStateDict { .. })),
        "{err}"
    );
    names(
        &err,
        "nosd.pth",
        &[
            "\"epoch\" (int 3)",
            "\"optimizer\" (dict)",
            "model_state_dict",
        ],
    );
}

#[test]
fn byteorder_must_be_little_or_big() {
    let zip = common::stored_zip(&[
        ("archive/data.pkl", b"\x80\x02}."),
        ("archive/byteorder", b"middle"),
    ]);
    let err = incept_torch::load_bytes(&zip, "bo.pth").unwrap_err();
    assert!(
        matches!(err.format_error(), Some(FormatError::BadByteOrder { .. })),
        "{err}"
    );
    names(&err, "bo.pth", &["archive/byteorder", "middle"]);
}

#[test]
fn entries_must_share_one_top_folder() {
    let zip = common::stored_zip(&[("a/data.pkl", b"\x80\x02}."), ("b/data.pkl", b"\x80\x02}.")]);
    let err = incept_torch::load_bytes(&zip, "two.pth").unwrap_err();
    assert!(
        matches!(
            err.format_error(),
            Some(FormatError::SeveralPrefixes { .. })
        ),
        "{err}"
    );
}

#[test]
fn big_endian_legacy_streams_are_refused() {
    let good = common::bytes("legacy.pth");
    let at = good
        .windows(13)
        .position(|w| w == b"little_endian")
        .unwrap();
    let mut b = good.clone();
    // The NEWTRUE right after the key (and its BINPUT) becomes NEWFALSE.
    let t = at + 13 + good[at + 13..].iter().position(|&x| x == 0x88).unwrap();
    b[t] = 0x89;
    let err = incept_torch::load_bytes(&b, "be_legacy.pth").unwrap_err();
    assert!(
        matches!(
            err.format_error(),
            Some(FormatError::Legacy(LegacyError::BigEndian))
        ),
        "{err}"
    );
}

/// The zip and legacy damage above, read through `load(path)`: positioned reads
/// of a file keep every check, and agree with the reader over memory.
#[test]
fn damage_is_refused_through_the_file_reader_too() {
    // Committed hostile files, read from their paths.
    for (file, check) in [
        (
            "bad_truncated.pth",
            (|e: &ZipError| matches!(e, ZipError::NoEndRecord)) as fn(&ZipError) -> bool,
        ),
        ("bad_overlap.pth", |e| matches!(e, ZipError::Overlap { .. })),
        ("bad_duplicate_entry.pth", |e| {
            matches!(e, ZipError::DuplicateEntry { .. })
        }),
        ("bad_deflate.pth", |e| {
            matches!(e, ZipError::Compressed { .. })
        }),
    ] {
        let err = incept_torch::load(&common::data(file)).unwrap_err();
        assert!(err.zip_error().is_some_and(check), "{file}: {err}");
        assert!(err.to_string().contains(file), "{err}");
    }
    let err = incept_torch::load(&common::data("bad_numel_mismatch.pth")).unwrap_err();
    assert!(
        matches!(
            err.format_error(),
            Some(FormatError::StorageSize { found: 16, .. })
        ),
        "{err}"
    );

    let pkl = {
        let mut p = b"\x80\x02}(".to_vec();
        p.extend(common::unicode("w"));
        p.extend(b"ctorch._utils\n_rebuild_tensor\n((");
        p.extend(common::unicode("storage"));
        p.extend(b"ctorch\nFloatStorage\n");
        p.extend(common::unicode("0"));
        p.extend(common::unicode("cpu"));
        p.extend(b"K\x03tQK\x00(K\x03t(K\x01ttRu.");
        p
    };
    let data: Vec<u8> = [0.5f32, 1.5, -2.0]
        .iter()
        .flat_map(|x| x.to_le_bytes())
        .collect();
    let entries: &[(&str, &[u8])] = &[("a/data.pkl", &pkl), ("a/data/0", &data)];
    let good = common::stored_zip(entries);
    let c = common::load_both("good.pth", &good).unwrap();
    assert_eq!(c.get("w").unwrap().as_f32(), Some(&[0.5f32, 1.5, -2.0][..]));

    // Entries declaring more bytes than the file has, up to 2^63 through zip64:
    // refused from the directory, before anything of that size is allocated.
    for size in [13, 0xFFFF_FFF0, u64::MAX >> 1, u64::MAX] {
        let zip = common::stored_zip_declaring(entries, &[("a/data/0", size)]);
        let err = common::load_both("oversized.pth", &zip).unwrap_err();
        assert!(
            matches!(err.zip_error(), Some(ZipError::OutOfBounds { entry, .. }) if entry == "a/data/0"),
            "{size}: {err}"
        );
    }
    // A central directory declared larger than the file.
    let mut zip = good.clone();
    let eocd = zip.len() - 22;
    zip[eocd + 12..eocd + 16].copy_from_slice(&0xFFFF_FF00u32.to_le_bytes());
    let err = common::load_both("big_directory.pth", &zip).unwrap_err();
    assert!(
        matches!(err.zip_error(), Some(ZipError::Truncated { what }) if what == "central directory"),
        "{err}"
    );
    // Every prefix of the archive (the end record lost, or the directory, or data).
    for n in [0, 1, 4, 30, good.len() / 2, good.len() - 23, good.len() - 1] {
        let err = common::load_both("cut.pth", &good[..n]).unwrap_err();
        assert!(err.format_error().is_some(), "{n}: {err}");
    }
    // A storage byte changed after its CRC-32 was computed: found when the
    // storage is read to build its tensor.
    let mut zip = good.clone();
    let at = zip
        .windows(4)
        .position(|w| w == 1.5f32.to_le_bytes())
        .unwrap();
    zip[at] ^= 1;
    let err = common::load_both("crc.pth", &zip).unwrap_err();
    assert!(
        matches!(err.zip_error(), Some(ZipError::Crc { entry, .. }) if entry == "a/data/0"),
        "{err}"
    );
    // An entry overlapping the next one: data.pkl declared to run into data/0.
    let zip = common::stored_zip_declaring(entries, &[("a/data.pkl", pkl.len() as u64 + 8)]);
    let err = common::load_both("overlap.pth", &zip).unwrap_err();
    assert!(
        matches!(err.zip_error(), Some(ZipError::Overlap { .. })),
        "{err}"
    );

    // Legacy streams: cut inside the last storage, or a count past the end.
    let legacy = common::bytes("legacy.pth");
    let err = common::load_both("cut_legacy.pth", &legacy[..legacy.len() - 3]).unwrap_err();
    assert!(
        matches!(
            err.format_error(),
            Some(FormatError::Legacy(LegacyError::Truncated { .. }))
        ),
        "{err}"
    );
    for n in (0..legacy.len()).step_by((legacy.len() / 200).max(1)) {
        let _ = common::load_both("prefix_legacy.pth", &legacy[..n]);
    }
}

/// Truncations and flips of real files agree between the two readers.
#[test]
fn file_and_memory_readers_agree_on_damaged_files() {
    let mut state = 0x2545_f491_4f6c_dd1du64;
    for file in ["dtypes.pth", "legacy.pth", "views.pth", "torchscript.pt"] {
        let good = common::bytes(file);
        for _ in 0..fuzz_iters(3000) / 30 {
            let mut b = good.clone();
            let r = next(&mut state);
            let at = (r % b.len() as u64) as usize;
            b[at] ^= 1 << ((r >> 32) % 8);
            let _ = common::load_both(file, &b);
        }
    }
}
