//! Builds llama.cpp (ggml + libllama, CPU only, static) from source with CMake, then the C shim.
//!
//! The sources are llama.cpp as vendored by the llama-cpp-python sdist on PyPI (the same tree the
//! bench's `llama-server` is built from, so both run one llama.cpp). `make llama-cpp-src` unpacks
//! them into ~/.cache/modelkube/llama.cpp-src-<version>; `MODELKUBE_LLAMA_CPP_SRC` overrides.

use std::env;
use std::path::PathBuf;

const LLAMA_CPP_PYTHON: &str = "0.3.36";

fn source_dir() -> PathBuf {
    if let Some(dir) = env::var_os("MODELKUBE_LLAMA_CPP_SRC") {
        return PathBuf::from(dir);
    }
    let home = env::var_os("HOME").expect("HOME is not set");
    PathBuf::from(home).join(format!(".cache/modelkube/llama.cpp-src-{LLAMA_CPP_PYTHON}"))
}

fn main() {
    println!("cargo:rerun-if-env-changed=MODELKUBE_LLAMA_CPP_SRC");
    println!("cargo:rerun-if-env-changed=MODELKUBE_LLAMA_CPP_LIB");
    println!("cargo:rerun-if-changed=shim/shim.c");
    let src = source_dir();
    assert!(
        src.join("include/llama.h").is_file(),
        "llama.cpp sources not found at {} (run `make llama-cpp-src`, or set MODELKUBE_LLAMA_CPP_SRC)",
        src.display()
    );
    if let Some(lib) = env::var_os("MODELKUBE_LLAMA_CPP_LIB") {
        // A shared build of the same sources made elsewhere (the bench's llama-server build):
        // for development only, since the result loads those libraries from that directory.
        let lib = PathBuf::from(lib);
        println!("cargo:rustc-link-search=native={}", lib.display());
        for name in ["llama", "ggml", "ggml-cpu", "ggml-base"] {
            println!("cargo:rustc-link-lib=dylib={name}");
        }
        println!("cargo:rustc-link-arg=-Wl,-rpath,{}", lib.display());
        shim(&src);
        return;
    }
    // CPU only and portable, as the bench's llama-server is built: no -march=native, no OpenMP
    // (ggml's own thread pool), no network code, nothing but the library.
    let out = cmake::Config::new(&src)
        .profile("Release")
        .define("BUILD_SHARED_LIBS", "OFF")
        .define("GGML_NATIVE", "OFF")
        .define("GGML_OPENMP", "OFF")
        .define("LLAMA_CURL", "OFF")
        .define("LLAMA_OPENSSL", "OFF")
        .define("LLAMA_BUILD_COMMON", "OFF")
        .define("LLAMA_BUILD_TESTS", "OFF")
        .define("LLAMA_BUILD_TOOLS", "OFF")
        .define("LLAMA_BUILD_EXAMPLES", "OFF")
        .define("LLAMA_BUILD_SERVER", "OFF")
        .define("CMAKE_POSITION_INDEPENDENT_CODE", "ON")
        .build_target("llama")
        .build();
    let build = out.join("build");
    for dir in ["src", "ggml/src"] {
        println!(
            "cargo:rustc-link-search=native={}",
            build.join(dir).display()
        );
    }
    for lib in ["llama", "ggml", "ggml-cpu", "ggml-base"] {
        println!("cargo:rustc-link-lib=static={lib}");
    }
    shim(&src);
    println!("cargo:rustc-link-lib=dylib=stdc++");
}

fn shim(src: &std::path::Path) {
    cc::Build::new()
        .file("shim/shim.c")
        .include(src.join("include"))
        .include(src.join("ggml/include"))
        .warnings(true)
        .compile("modelkube_llama_shim");
}
