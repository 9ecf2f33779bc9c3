//! The lab (cargo feature `lab`): everything that makes and measures the cross-encoder head but
//! never runs in a validator. [`generate_set`] decodes honest answers with the registered model
//! (batched, optionally cached) and degrades them ([`Kind`]: another prompt's answer, truncated,
//! random tokens, shuffled words, a substituted model, dropped layers); [`train_head`] fits the
//! logistic head on their features ([`fit`], [`cross_validate`]) and [`save_head`] records its
//! checksum; [`score_all`] and [`summarize`] measure a cascade on a labelled set ([`auc`],
//! [`threshold_at_fpr`], [`caught_rate`]). [`seeded_answers`] and [`seeded_table`] measure the
//! seeded consistency test on sampled answers with known seeds (honest, and cheats that know the
//! seed: [`Source`]). All of it is seeded ([`SplitMix`]).

mod attack;
mod dataset;
mod metrics;
mod rng;
mod seeded;
mod suite;
mod train;

pub use attack::{Kind, garbage, shuffle_words, truncate};
pub use dataset::{
    Answer, DroppedLayers, GENERATE_BATCH, Sample, Sources, answer, answers, answers_cached, decode_batched,
    read_prompts, samples_for,
};
pub use metrics::{auc, binomial_upper, caught_rate, threshold_at_fpr};
pub use rng::SplitMix;
pub use seeded::{
    Cell, PASS_SCORE, SeededScore, SeededTask, Source, TEMPERATURES, cheat_shard, score_seeded,
    seeded_answers, seeded_table, seeded_task, seeded_tasks,
};
pub use suite::{
    CV_FOLDS, Scored, SetSpec, Substitutes, Summary, TRAIN_KINDS, generate_set, quantile, score_all,
    summarize, train_head,
};
pub use train::{TrainConfig, cross_validate, fit, save_head};
