//! Regenerates include/rstar.h from src/ffi with cbindgen. The header is committed; CI checks that a
//! build leaves it unchanged (`git diff --exit-code include/rstar.h`). A read-only source tree (e.g. a
//! packaged crate) only gets a warning.

fn main() {
    // cbindgen reads every public item of the crate, not only src/ffi: a new public constant
    // anywhere lands in the header unless cbindgen.toml excludes it.
    println!("cargo:rerun-if-changed=src");
    println!("cargo:rerun-if-changed=cbindgen.toml");
    let dir = std::env::var("CARGO_MANIFEST_DIR").unwrap_or_else(|_| ".".into());
    let config = match cbindgen::Config::from_file(format!("{dir}/cbindgen.toml")) {
        Ok(c) => c,
        Err(e) => {
            println!("cargo:warning=cbindgen.toml: {e}");
            return;
        }
    };
    let bindings = match cbindgen::generate_with_config(&dir, config) {
        Ok(b) => b,
        Err(e) => {
            println!("cargo:warning=cbindgen could not generate include/rstar.h: {e}");
            return;
        }
    };
    let mut text = Vec::new();
    bindings.write(&mut text);
    let path = format!("{dir}/include/rstar.h");
    if std::fs::read(&path).ok().as_deref() != Some(&text[..]) {
        if let Err(e) = std::fs::write(&path, &text) {
            println!("cargo:warning=cannot write {path}: {e}");
        }
    }
}
