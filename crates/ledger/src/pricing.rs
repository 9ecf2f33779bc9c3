//! EIP-1559-style per-model price update at each epoch boundary:
//! `p <- clamp(p * (1 + (u - u*) / (u* * d)), p_floor, p_floor * ceiling_multiple)`,
//! with `u = tokens of paid tasks / capacity of the staked workers`, clamped to `0..=2u*` so one epoch moves the price
//! by at most `1/d`. All in integers: u in parts per million.

use crate::Params;
use crate::params::PPM_ONE;
use crate::state::State;
use polylink_types::{Amount, Event, ModelId};
use std::collections::BTreeMap;

/// Utilization in ppm, clamped to `0..=2u*`. No capacity: `u*` (no change) when idle, `2u*` when
/// tokens were billed anyway.
pub fn utilization_ppm(tokens: u64, capacity_tokens: u128, target_ppm: u64) -> u64 {
    let cap = 2 * target_ppm;
    if capacity_tokens == 0 {
        return if tokens == 0 { target_ppm } else { cap };
    }
    let u = u128::from(tokens).saturating_mul(u128::from(PPM_ONE)) / capacity_tokens;
    u64::try_from(u).unwrap_or(u64::MAX).min(cap)
}

/// The next price for utilization `u_ppm`.
pub fn next_price(price: Amount, floor: Amount, u_ppm: u64, params: &Params) -> Amount {
    let target = u128::from(params.target_utilization_ppm);
    let denom = target.saturating_mul(u128::from(params.price_change_denominator));
    let u = u128::from(u_ppm);
    let raw = if u >= target {
        price.saturating_add(price.saturating_mul(u - target) / denom)
    } else {
        price.saturating_sub(price.saturating_mul(target - u) / denom)
    };
    let ceiling = floor.saturating_mul(u128::from(params.price_ceiling_multiple));
    raw.clamp(floor, ceiling.max(floor))
}

/// Tokens per epoch each model can serve: every active (staked) worker serving a range of it
/// adds `epoch_ms / capacity_token_ms` whole-model tokens times its share of the layers. What
/// workers report about their own speed does not enter: a worker claiming to be slow would
/// otherwise shrink the capacity and raise the price it is paid, one claiming to be fast would
/// push its rivals' price to the floor.
fn capacities(state: &State) -> BTreeMap<ModelId, u128> {
    let p = &state.params;
    let epoch_ms = u128::from(p.epoch_length_blocks).saturating_mul(u128::from(p.block_time_ms));
    let mut caps = BTreeMap::new();
    for (who, worker) in &state.workers {
        let bonded = state.stakes.get(who).map_or(0, |s| s.bonded);
        if bonded < p.worker_stake_min {
            continue;
        }
        let mut seen: Vec<ModelId> = Vec::new();
        for r in worker.served.iter() {
            let Some(model) = state.models.get(&r.model) else { continue };
            if seen.contains(&r.model) {
                continue;
            }
            seen.push(r.model);
            let layers = u128::from(r.layer_end.saturating_sub(r.layer_start));
            let per_model = u128::from(model.layer_count).saturating_mul(u128::from(p.capacity_token_ms));
            if let Some(tokens) = epoch_ms.saturating_mul(layers).checked_div(per_model) {
                let c = caps.entry(r.model).or_insert(0u128);
                *c = c.saturating_add(tokens);
            }
        }
    }
    caps
}

/// Updates every model's price from its epoch's tokens and resets the counters.
pub(crate) fn epoch_update(state: &mut State) -> Vec<Event> {
    let caps = capacities(state);
    let params = state.params.clone();
    let mut events = Vec::new();
    for (id, model) in state.models.iter_mut() {
        let u_ppm = utilization_ppm(
            model.epoch_tokens,
            caps.get(id).copied().unwrap_or(0),
            params.target_utilization_ppm,
        );
        let new_price = next_price(model.price, model.price_floor, u_ppm, &params);
        if new_price != model.price {
            events.push(Event::PriceUpdated {
                model: *id,
                old_price: model.price,
                new_price,
                utilization_ppm: u_ppm,
            });
            model.price = new_price;
        }
        model.epoch_tokens = 0;
    }
    events
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn price_moves_toward_target_by_at_most_one_over_d_and_stays_clamped() {
        let p = Params::default();
        let t = p.target_utilization_ppm;
        assert_eq!(next_price(10_000, 100, t, &p), 10_000);
        assert_eq!(next_price(10_000, 100, 2 * t, &p), 11_250);
        assert_eq!(next_price(10_000, 100, 0, &p), 8_750);
        assert_eq!(next_price(10_000, 100, t + t / 2, &p), 10_625);
        assert_eq!(next_price(1_000, 1_000, 0, &p), 1_000, "never under the floor");
        let ceiling = 1_000 * u128::from(p.price_ceiling_multiple);
        assert_eq!(next_price(ceiling, 1_000, 2 * t, &p), ceiling, "never over the ceiling");
        assert_eq!(utilization_ppm(10_000, 1, t), 2 * t);
        assert_eq!(utilization_ppm(0, 0, t), t);
        assert_eq!(utilization_ppm(250, 1000, t), 250_000);
    }
}
