//! Files from librstar's GGUF writer read by the `gguf` Python package (gguf-py, llama.cpp's own
//! reader and numpy codecs): the metadata and tensor table parse to what was written, gguf-py's
//! dequantization of our blocks equals ours, and for the formats gguf-py can quantize (Q4_0, Q4_1,
//! Q5_0, Q5_1, Q8_0) its bytes equal ours.
//!
//! Python: `RSTAR_GGUF_PYTHON` (an interpreter with `gguf` and `numpy`), else `python3`. Without
//! the package the test prints SKIPPED, or fails when `RSTAR_REQUIRE_GGUF_PY=1` (CI).

use std::path::Path;
use std::process::Command;

use rstar::backend::cpu::quant::quantize::can_quantize;
use rstar::backend::cpu::quant::QuantFormat;
use rstar::model::gguf::MetaValue;
use rstar::model::gguf_write::{encode, write_gguf, TensorPlan};
use rstar::model::quant::{dequantize, GgmlType};
use serde_json::{json, Value};

const SCRIPT: &str = r#"
import json, sys, os
import numpy as np
from gguf import GGUFReader, quants, GGMLQuantizationType as T
path, out = sys.argv[1], sys.argv[2]
r = GGUFReader(path)
meta = {}
for f in r.fields.values():
    if f.name.startswith("GGUF."):
        continue
    v = f.contents()
    meta[f.name] = v.item() if hasattr(v, "item") else v
tensors = []
x = None
for t in r.tensors:
    tensors.append({"name": t.name, "type": t.tensor_type.name, "dims": [int(d) for d in t.shape],
                    "bytes": int(t.n_bytes)})
    deq = quants.dequantize(t.data, t.tensor_type).astype(np.float32)
    deq.tofile(os.path.join(out, t.name + ".deq"))
    if t.name == "input":
        x = deq
for t in r.tensors:
    try:
        q = quants.quantize(x, t.tensor_type)
    except NotImplementedError:
        continue
    q.tofile(os.path.join(out, t.name + ".q"))
json.dump({"meta": meta, "tensors": tensors}, open(os.path.join(out, "report.json"), "w"))
"#;

fn python() -> Option<String> {
    let py = std::env::var("RSTAR_GGUF_PYTHON").unwrap_or_else(|_| "python3".into());
    let ok = Command::new(&py)
        .args(["-c", "import gguf, numpy"])
        .output()
        .is_ok_and(|o| o.status.success());
    if ok {
        return Some(py);
    }
    let required = std::env::var_os("RSTAR_REQUIRE_GGUF_PY").is_some_and(|v| v == "1");
    assert!(
        !required,
        "RSTAR_REQUIRE_GGUF_PY=1 but `{py}` cannot import gguf and numpy"
    );
    eprintln!(
        "SKIPPED: `{py}` cannot import gguf and numpy (pip install gguf, or set RSTAR_GGUF_PYTHON)"
    );
    None
}

/// Rows of varied scale and sign, deterministic.
fn input(rows: usize, cols: usize) -> Vec<f32> {
    let mut s = 0x2545_f491_4f6c_dd1du64;
    (0..rows * cols)
        .map(|i| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            let u = (s >> 40) as f32 / (1u64 << 24) as f32 - 0.5;
            let scale = [0.02, 1.0, 30.0, 1e-3][i / cols % 4];
            u * scale + if i / cols == 3 { 5e-4 } else { 0.0 }
        })
        .collect()
}

fn metadata() -> Vec<(String, MetaValue)> {
    let strs =
        |v: &[&str]| MetaValue::Array(v.iter().map(|s| MetaValue::Str((*s).into())).collect());
    vec![
        (
            "general.architecture".into(),
            MetaValue::Str("qwen2".into()),
        ),
        ("general.alignment".into(), MetaValue::U32(32)),
        ("t.u8".into(), MetaValue::U8(200)),
        ("t.i8".into(), MetaValue::I8(-100)),
        ("t.u16".into(), MetaValue::U16(60000)),
        ("t.i16".into(), MetaValue::I16(-30000)),
        ("t.i32".into(), MetaValue::I32(-5)),
        ("t.f32".into(), MetaValue::F32(1e-6)),
        ("t.u64".into(), MetaValue::U64(1 << 40)),
        ("t.i64".into(), MetaValue::I64(-(1 << 40))),
        ("t.f64".into(), MetaValue::F64(0.1)),
        ("t.bool".into(), MetaValue::Bool(true)),
        (
            "t.str".into(),
            MetaValue::Str("Ġhello wörld {{ x }}".into()),
        ),
        ("t.strs".into(), strs(&["a", "Ġb c", ""])),
        (
            "t.ints".into(),
            MetaValue::Array(vec![MetaValue::I32(1), MetaValue::I32(-2)]),
        ),
    ]
}

fn f32s(p: &Path) -> Vec<f32> {
    std::fs::read(p)
        .unwrap()
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
        .collect()
}

#[test]
fn gguf_python_reads_our_files() {
    let Some(py) = python() else { return };
    let (rows, cols) = (4, 512);
    let x = input(rows, cols);
    let mut plan = vec![TensorPlan {
        name: "input".into(),
        dims: vec![cols, rows],
        ty: GgmlType::F32,
    }];
    plan.push(TensorPlan {
        name: "half".into(),
        dims: vec![cols, rows],
        ty: GgmlType::F16,
    });
    for f in QuantFormat::ALL.into_iter().filter(|&f| can_quantize(f)) {
        plan.push(TensorPlan {
            name: f.name().into(),
            dims: vec![cols, rows],
            ty: GgmlType::Quant(f),
        });
    }
    let data: Vec<Vec<u8>> = plan
        .iter()
        .map(|t| encode(t.ty, &x, cols).unwrap())
        .collect();
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("t.gguf");
    write_gguf(&file, &metadata(), &plan, |i, _| Ok(data[i].clone())).unwrap();
    let out = Command::new(&py)
        .args(["-c", SCRIPT])
        .arg(&file)
        .arg(tmp.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value =
        serde_json::from_str(&std::fs::read_to_string(tmp.path().join("report.json")).unwrap())
            .unwrap();
    let want = json!({
        "general.architecture": "qwen2", "general.alignment": 32, "t.u8": 200, "t.i8": -100,
        "t.u16": 60000, "t.i16": -30000, "t.i32": -5, "t.u64": 1u64 << 40, "t.i64": -(1i64 << 40),
        "t.f64": 0.1, "t.bool": true, "t.str": "Ġhello wörld {{ x }}", "t.strs": ["a", "Ġb c", ""],
        "t.ints": [1, -2],
    });
    for (k, v) in want.as_object().unwrap() {
        assert_eq!(&report["meta"][k], v, "metadata {k}");
    }
    assert_eq!(report["meta"]["t.f32"].as_f64().unwrap() as f32, 1e-6);
    let tensors = report["tensors"].as_array().unwrap();
    assert_eq!(tensors.len(), plan.len());
    for ((t, got), bytes) in plan.iter().zip(tensors).zip(&data) {
        assert_eq!(got["name"], t.name.as_str());
        assert_eq!(got["type"], t.ty.name());
        assert_eq!(got["bytes"], bytes.len());
        let mut ours = vec![0f32; rows * cols];
        dequantize(t.ty, bytes, &mut ours).unwrap();
        let theirs = f32s(&tmp.path().join(format!("{}.deq", t.name)));
        assert_eq!(theirs.len(), ours.len(), "{}", t.name);
        for (i, (a, b)) in ours.iter().zip(&theirs).enumerate() {
            let ulp = (a.to_bits() as i64 - b.to_bits() as i64).abs();
            assert!(ulp <= 1, "{} value {i}: ours {a}, gguf-py {b}", t.name);
        }
        let q = tmp.path().join(format!("{}.q", t.name));
        if let (GgmlType::Quant(_), true) = (t.ty, q.exists()) {
            assert_eq!(
                &std::fs::read(&q).unwrap(),
                bytes,
                "{}: gguf-py's quantize",
                t.name
            );
            println!("{}: bytes equal gguf-py's quantize", t.name);
        }
    }
}
