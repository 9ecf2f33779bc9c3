//! MiniLM-L6 forward and WordPiece against known values of the real all-MiniLM-L6-v2 weights.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use polylink_infer::cosine;
use polylink_models::{MINILM_L6_V2, path};
use polylink_tiqe::{CrossEncoder, Head, MiniLmFiles};

fn encoder() -> CrossEncoder {
    let files = MiniLmFiles {
        weights: path(MINILM_L6_V2, "model.safetensors").unwrap(),
        vocab: path(MINILM_L6_V2, "vocab.txt").unwrap(),
    };
    CrossEncoder::open(&files, None, 1).unwrap()
}

#[test]
fn sentence_cosines_match_the_reference_implementation() {
    let e = encoder();
    let guitar = e.embed("A man is playing a guitar on stage.").unwrap();
    let music = e.embed("Someone performs music with a guitar.").unwrap();
    let stocks = e.embed("The stock market fell sharply today.").unwrap();
    let c1 = cosine(&guitar, &music);
    let c2 = cosine(&guitar, &stocks);
    assert!((c1 - 0.6861).abs() < 5e-4, "guitar/music cosine {c1}");
    assert!((c2 + 0.0830).abs() < 5e-4, "guitar/stocks cosine {c2}");
    let p1 = e.embed("How do I reset my password?").unwrap();
    let p2 = e.embed("Steps to recover access to your account").unwrap();
    assert!((cosine(&p1, &p2) - 0.5989).abs() < 5e-4);
}

#[test]
fn wordpiece_matches_bert_ids() {
    let e = encoder();
    let enc = e.wordpiece().encode_pair("Hello, world!", "Tokenization", 16);
    // [CLS] hello , world ! [SEP] token ##ization [SEP]
    assert_eq!(enc.ids, [101, 7592, 1010, 2088, 999, 102, 19204, 3989, 102]);
    assert_eq!(enc.type_ids, [0, 0, 0, 0, 0, 0, 1, 1, 1]);
    let long = "word ".repeat(400);
    assert_eq!(e.wordpiece().encode_pair(&long, &long, 256).ids.len(), 256);
}

#[test]
fn cross_encoder_probabilities_stay_what_the_shipped_head_was_measured_with() {
    // P(good) under the built-in head, recorded from the encoder the head was trained on; a
    // change to the forward pass, the tokenizer or the features moves them.
    let files = MiniLmFiles {
        weights: path(MINILM_L6_V2, "model.safetensors").unwrap(),
        vocab: path(MINILM_L6_V2, "vocab.txt").unwrap(),
    };
    let head = Head::shipped().unwrap();
    let e = CrossEncoder::open(&files, Some(head.clone()), 2).unwrap();
    let cases = [
        ("What is the capital of Japan?", "The capital of Japan is Tokyo.", 0.995_643_628),
        (
            "Explain why the sky is blue in a short paragraph.",
            "The sky appears blue because molecules in the air scatter short blue wavelengths of \
             sunlight more strongly than long red ones, a process called Rayleigh scattering. When we \
             look up, that scattered blue light reaches our eyes from every direction.",
            0.872_683_182,
        ),
        ("Name a colour.", "banana seventeen the the quickly Tokyo ##ing", 0.000_214_313),
        (
            "Héllo, WORLD!! 東京 naïve café",
            "Résumé: über-cool, 12.5% off; see https://x.y/z?q=1.",
            0.614_269_039,
        ),
    ];
    for (prompt, output, want) in cases {
        let p = head.prob(&e.features(prompt, output).unwrap());
        assert!((p - want).abs() < 1e-6, "{prompt:?}: P(good) {p:.9}, recorded {want}");
    }
}
