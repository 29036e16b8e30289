// glibc malloc cost about a fifth of the server's CPU per ACME flow; mimalloc cut it to a
// fraction (BENCHMARKS.md, "Where the time goes").
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    certgate::cli::main()
}
