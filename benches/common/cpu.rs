//! The CPU a benchmark ran on, printed at the top of its output so a figure
//! can be placed: the model name, family and model number (under KVM the name
//! is often just "AMD EPYC", and Milan and Zen 5 differ by 2× in these
//! benches), the SIMD flags the kernels dispatch on, and the thread count.

pub fn describe(threads: usize) -> String {
    let info = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let field = |key: &str| {
        info.lines()
            .find(|l| l.split(':').next().is_some_and(|k| k.trim() == key))
            .and_then(|l| l.split_once(':'))
            .map(|(_, v)| v.trim().to_string())
    };
    let name = field("model name").unwrap_or_else(|| "unknown CPU".into());
    let family = field("cpu family").unwrap_or_else(|| "?".into());
    let model = field("model").unwrap_or_else(|| "?".into());
    let flags: Vec<String> = field("flags")
        .map(|l| {
            l.split_whitespace()
                .filter(|f| f.starts_with("avx") || f.starts_with("amx") || *f == "fma")
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default();
    format!("{name} (family {family}, model {model}; {threads} threads; {})", flags.join(" "))
}
