//! Compiles `src/faiss_interrupt.cpp`: FAISS's interrupt callback is a C++ class with no C API,
//! and it is how a long FAISS call (training, an HNSW add) stops on `sqlite3_interrupt`.

fn main() {
    println!("cargo:rerun-if-changed=src/faiss_interrupt.cpp");
    cc::Build::new()
        .cpp(true)
        .std("c++17")
        .flag("-fvisibility=hidden")
        .file("src/faiss_interrupt.cpp")
        .compile("vekter_faiss_interrupt");
}
