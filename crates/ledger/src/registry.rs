//! Registries of models, workers, gateways and validators, and the role checks built on them.

use crate::error::mul;
use crate::records::{Gateway, Model, Validator, Worker};
use crate::view::View;
use crate::{LedgerError, Result, TREASURY};
use polylink_types::{
    Amount, ArtifactClaim, ClaimModel, Event, Hash32, ModelId, PublicKey, RegisterGateway, RegisterModel,
    RegisterWorker,
};

/// Largest layer count a model may declare.
pub const LAYERS_MAX: u32 = 4096;

fn invalid(what: &'static str, reason: String) -> LedgerError {
    LedgerError::Invalid { what, reason }
}

/// The developer an artifact claim proves for `artifact`, or `BadArtifactClaim`.
fn proven_developer(artifact: &Hash32, claim: &ArtifactClaim) -> Result<PublicKey> {
    claim
        .developer_of(artifact)
        .filter(|key| *key != TREASURY)
        .ok_or(LedgerError::BadArtifactClaim { artifact: *artifact })
}

/// Registers a model, once per artifact; its price starts at the floor. The royalty goes to the
/// developer the artifact names (`m.claim`), else to the treasury until that developer claims
/// it: the registrant gains nothing by registering someone else's artifact.
pub(crate) fn register_model(v: &mut View, _registrant: &PublicKey, m: &RegisterModel) -> Result<()> {
    let params = &v.base.params;
    if let Some(&model) = v.artifacts.get(&m.artifact_hash) {
        return Err(LedgerError::ArtifactRegistered { artifact: m.artifact_hash, model });
    }
    let developer = match &m.claim {
        Some(claim) => proven_developer(&m.artifact_hash, claim)?,
        None => TREASURY,
    };
    if m.architecture.as_str().is_empty() {
        return Err(invalid("model", "empty architecture".into()));
    }
    if !(1..=LAYERS_MAX).contains(&m.layer_count) {
        return Err(invalid("model", format!("layer_count {} outside 1..={LAYERS_MAX}", m.layer_count)));
    }
    if m.royalty_bps > params.royalty_bps_max {
        return Err(invalid(
            "model",
            format!("royalty_bps {} above maximum {}", m.royalty_bps, params.royalty_bps_max),
        ));
    }
    if m.price_floor == 0 {
        return Err(invalid("model", "price_floor must be positive".into()));
    }
    mul(m.price_floor, Amount::from(params.price_ceiling_multiple), "price ceiling")?;
    let id = v.totals.next_model_id;
    v.totals.next_model_id = id.checked_add(1).ok_or(LedgerError::Overflow("model id"))?;
    v.artifacts.put(m.artifact_hash, id);
    v.models.put(
        id,
        Model {
            developer,
            artifact_hash: m.artifact_hash,
            architecture: m.architecture.clone(),
            layer_count: m.layer_count,
            royalty_bps: m.royalty_bps,
            price_floor: m.price_floor,
            price: m.price_floor,
            epoch_tokens: 0,
        },
    );
    v.events.push(Event::ModelRegistered { model: id, developer });
    Ok(())
}

/// Points an unclaimed model's royalty at the developer its artifact names (anyone may show it).
pub(crate) fn claim_model(v: &mut View, c: &ClaimModel) -> Result<()> {
    let mut model = v.models.get(&c.model).cloned().ok_or(LedgerError::UnknownModel(c.model))?;
    if model.developer != TREASURY {
        return Err(LedgerError::ModelClaimed { model: c.model, developer: model.developer });
    }
    model.developer = proven_developer(&model.artifact_hash, &c.claim)?;
    v.events.push(Event::ModelClaimed { model: c.model, developer: model.developer });
    v.models.put(c.model, model);
    Ok(())
}

/// Fails unless `who` has at least `need` bonded.
pub(crate) fn require_stake(v: &View, who: &PublicKey, role: &'static str, need: Amount) -> Result<()> {
    let have = v.stake(who).bonded;
    if have < need {
        return Err(LedgerError::StakeBelowMinimum { role, account: *who, have, need });
    }
    Ok(())
}

/// Registers or updates a worker; it needs the worker minimum bonded.
pub(crate) fn register_worker(v: &mut View, who: &PublicKey, w: &RegisterWorker) -> Result<()> {
    require_stake(v, who, "worker", v.base.params.worker_stake_min)?;
    if w.served.is_empty() {
        return Err(invalid("worker", "serves no model".into()));
    }
    if w.profile.memory_mib == 0 {
        return Err(invalid("worker", "memory_mib must be positive".into()));
    }
    if let Err(e) = w.endpoint.as_str().parse::<std::net::SocketAddr>() {
        return Err(LedgerError::BadEndpoint { endpoint: w.endpoint.to_string(), reason: e.to_string() });
    }
    for r in w.served.iter() {
        let model = v.models.get(&r.model).ok_or(LedgerError::UnknownModel(r.model))?;
        if r.layer_start >= r.layer_end || r.layer_end > model.layer_count {
            return Err(invalid(
                "worker",
                format!(
                    "layer range {}..{} of model {} (with {} layers)",
                    r.layer_start, r.layer_end, r.model, model.layer_count
                ),
            ));
        }
        if r.layer_time_us == 0 {
            return Err(invalid("worker", format!("layer_time_us is 0 for model {}", r.model)));
        }
    }
    let worker = Worker {
        profile: w.profile,
        served: w.served.clone(),
        endpoint: w.endpoint.clone(),
        registered_height: v.height,
    };
    v.workers.put(*who, worker);
    v.events.push(Event::WorkerRegistered { worker: *who });
    Ok(())
}

/// Registers a gateway or moves its endpoint; it needs the gateway minimum bonded.
pub(crate) fn register_gateway(v: &mut View, who: &PublicKey, g: &RegisterGateway) -> Result<()> {
    require_stake(v, who, "gateway", v.base.params.gateway_stake_min)?;
    if let Err(e) = g.endpoint.as_str().parse::<std::net::SocketAddr>() {
        return Err(LedgerError::BadEndpoint { endpoint: g.endpoint.to_string(), reason: e.to_string() });
    }
    v.gateways.put(*who, Gateway { endpoint: g.endpoint.clone(), registered_height: v.height });
    v.events.push(Event::GatewayRegistered { gateway: *who });
    Ok(())
}

/// Fails unless `who` is a registered gateway with the gateway minimum bonded: only such a
/// gateway may be named on a task (it reports the result and serves the transcript).
pub(crate) fn check_gateway(v: &View, who: &PublicKey) -> Result<()> {
    if v.gateways.get(who).is_none() {
        return Err(LedgerError::WrongRole {
            account: *who,
            action: "serve a task as its gateway",
            reason: "it is not a registered gateway",
        });
    }
    require_stake(v, who, "gateway", v.base.params.gateway_stake_min)
}

/// Registers a validator; it needs the validator minimum bonded.
pub(crate) fn register_validator(v: &mut View, who: &PublicKey) -> Result<()> {
    if v.validators.get(who).is_some() {
        return Err(LedgerError::AlreadyRegistered { role: "validator", account: *who });
    }
    require_stake(v, who, "validator", v.base.params.validator_stake_min)?;
    v.validators.put(*who, Validator { registered_height: v.height });
    v.events.push(Event::ValidatorRegistered { validator: *who });
    Ok(())
}

/// Checks that `workers` are active workers whose ranges of `model` chain from layer 0 to the
/// last layer in the given order (one worker: the whole model).
/// Returns the pipeline's registered time per token, µs (each range's layers x its layer time).
pub(crate) fn check_pipeline(v: &View, model_id: ModelId, workers: &[PublicKey]) -> Result<u64> {
    let model = v.models.get(&model_id).ok_or(LedgerError::UnknownModel(model_id))?;
    if workers.is_empty() {
        return Err(invalid("task", "no worker".into()));
    }
    let (mut next_layer, mut token_us) = (0u32, 0u64);
    for (i, who) in workers.iter().enumerate() {
        if workers[..i].contains(who) {
            return Err(invalid("task", format!("worker {who} listed twice")));
        }
        let worker = v.workers.get(who).ok_or(LedgerError::UnknownWorker(*who))?;
        require_stake(v, who, "worker", v.base.params.worker_stake_min)?;
        let range =
            worker.served.iter().find(|r| r.model == model_id && r.layer_start == next_layer).ok_or_else(
                || {
                    invalid(
                        "task",
                        format!(
                            "worker {who} serves no range of model {model_id} starting at layer {next_layer}"
                        ),
                    )
                },
            )?;
        next_layer = range.layer_end;
        let layers = u64::from(range.layer_end.saturating_sub(range.layer_start));
        token_us = token_us.saturating_add(layers.saturating_mul(u64::from(range.layer_time_us)));
    }
    if next_layer != model.layer_count {
        return Err(invalid(
            "task",
            format!("pipeline ends at layer {next_layer}, model {model_id} has {}", model.layer_count),
        ));
    }
    Ok(token_us)
}
