//! `crm-bench sync --roles mixed`: what the relay's write authorization costs live. The same
//! relay, on the same data, runs the live phases (propagation, then throughput) with the
//! admins' devices (bound to no user: the relay decides nothing about their changes) and
//! with devices of users of mixed roles (every change decoded and decided against the
//! record's shape, every entry filtered for every receiver), in alternating order for
//! `--rounds` rounds, and compares them.
//!
//! [`organise`] makes the organisation through the relay's service API: one team per sales
//! manager (a tenth of the devices), a tenth support agents, the rest sales reps spread
//! over the teams. Each device writes only what its user may ([`Identity`]): reps and
//! managers an account they own, agents (who may not create accounts) a contact they own.
//! Every record names every team, so every device receives every change, as in the admins'
//! run: the two runs differ by the checks and the filtering, not by how far a change fans
//! out.

use std::time::Duration;

use anyhow::{Context, Result};
use crm_model::{Author, Kind, RecordId, Role};
use crm_relay::{Relay, WorkspaceId};
use serde::Serialize;

use super::live::{Identity, LiveDevice};
use super::{Propagation, Throughput};
use crate::stats::Latency;

/// Whose devices the live phases use.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Roles {
    /// Devices bound to no user, as admins' (the relay checks nothing about their writes).
    Admin,
    /// The admins' run and, on the same relay and data, a run with devices of sales reps,
    /// sales managers and support agents, compared.
    Mixed,
}

impl Roles {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Roles::Admin => "admin",
            Roles::Mixed => "mixed",
        }
    }
}

/// The users of the mixed run, each with one device.
#[derive(Clone, Debug)]
pub(crate) struct Organisation {
    pub(crate) summary: OrganisationSummary,
    /// Device i of the mixed run.
    pub(crate) devices: Vec<LiveDevice>,
    /// Each device's user's role, by device.
    pub(crate) roles: Vec<Role>,
}

/// How many of each.
#[derive(Clone, Debug, Default, Serialize)]
pub(crate) struct OrganisationSummary {
    pub(crate) teams: usize,
    pub(crate) sales_managers: usize,
    pub(crate) sales_reps: usize,
    pub(crate) support_agents: usize,
}

/// The role of device `i`'s user: every tenth device from the second a sales manager, every
/// tenth from the third a support agent, the others sales reps; so the pushers of the
/// throughput measurement (the first devices) are of every role, and device 0, the
/// propagation pusher, is a rep.
fn role_of(i: usize) -> Role {
    match i % 10 {
        1 => Role::SalesManager,
        2 => Role::SupportAgent,
        _ => Role::SalesRep,
    }
}

/// Adds the organisation's teams, users and one device per user to `workspace`, through
/// the calls `crm-relay team|user|device add` make.
pub(crate) fn organise(
    relay: &Relay,
    workspace: WorkspaceId,
    devices: usize,
) -> Result<Organisation> {
    let roles: Vec<Role> = (0..devices).map(role_of).collect();
    let name = |i: usize| match roles[i] {
        Role::SalesManager => format!("bench-manager-{i}"),
        Role::SupportAgent => format!("bench-agent-{i}"),
        _ => format!("bench-rep-{i}"),
    };
    // Managers first: a team names its manager.
    let managers: Vec<usize> = (0..devices)
        .filter(|i| roles[*i] == Role::SalesManager)
        .collect();
    anyhow::ensure!(
        !managers.is_empty(),
        "the mixed run needs at least 2 devices (device 1 is a sales manager)"
    );
    let mut teams = Vec::with_capacity(managers.len());
    for (j, &m) in managers.iter().enumerate() {
        relay
            .add_user(workspace, &name(m), None, Role::SalesManager, &[])
            .with_context(|| format!("adding sales manager {}", name(m)))?;
        let team = relay
            .add_team(workspace, &format!("bench-team-{j}"), Some(&name(m)))
            .with_context(|| format!("adding team bench-team-{j}"))?;
        teams.push(team);
    }
    let mut summary = OrganisationSummary {
        teams: teams.len(),
        sales_managers: managers.len(),
        ..OrganisationSummary::default()
    };
    for (i, role) in roles.iter().enumerate() {
        let added = match role {
            Role::SalesManager => continue,
            Role::SupportAgent => {
                summary.support_agents += 1;
                relay.add_user(workspace, &name(i), None, Role::SupportAgent, &[])
            }
            _ => {
                let team = &teams[summary.sales_reps % teams.len()];
                summary.sales_reps += 1;
                relay.add_user(
                    workspace,
                    &name(i),
                    None,
                    Role::SalesRep,
                    std::slice::from_ref(&team.name),
                )
            }
        };
        added.with_context(|| format!("adding user {}", name(i)))?;
    }
    let every_team: Vec<RecordId> = teams.iter().map(|t| t.id).collect();
    let mut live = Vec::with_capacity(devices);
    for (i, role) in roles.iter().enumerate() {
        let user = name(i);
        let added = relay
            .add_device(workspace, &user)
            .with_context(|| format!("adding a device for {user}"))?;
        let user_id = added
            .device
            .user_id
            .map(RecordId::from_uuid)
            .with_context(|| format!("the device of {user} is bound to no user"))?;
        live.push(LiveDevice {
            token: added.token.expose().to_string(),
            identity: Identity {
                author: Author::new(user.as_str(), format!("{user}-device"))
                    .with_ids(user_id.to_string(), added.device.id.to_string()),
                // Support agents create contacts, not accounts; every role edits its own.
                kind: match role {
                    Role::SupportAgent => Kind::Contact,
                    _ => Kind::Account,
                },
                owner: Some(user_id),
                teams: every_team.clone(),
            },
        });
    }
    Ok(Organisation {
        summary,
        devices: live,
        roles,
    })
}

/// One run of the live phases with one set of devices.
#[derive(Clone, Debug, Serialize)]
pub(crate) struct LiveRun {
    /// 1-based.
    pub(crate) round: usize,
    pub(crate) roles: Roles,
    pub(crate) propagation: Propagation,
    pub(crate) throughput: Vec<Throughput>,
    pub(crate) errors: Vec<String>,
    /// Every (push, receiver) latency of the propagation, for the figures over all rounds.
    #[serde(skip)]
    pub(crate) receiver_samples: Vec<Duration>,
}

/// One pusher count, admin against mixed, over the rounds.
#[derive(Clone, Debug, Serialize)]
pub(crate) struct ThroughputRatio {
    pub(crate) pushing_devices: usize,
    /// Each round's pushes/s, in round order.
    pub(crate) admin_pushes_per_s: Vec<f64>,
    pub(crate) mixed_pushes_per_s: Vec<f64>,
    /// Their medians.
    pub(crate) admin_median: f64,
    pub(crate) mixed_median: f64,
    /// mixed ÷ admin of the medians.
    pub(crate) ratio: f64,
    /// Each round's mixed ÷ admin.
    pub(crate) round_ratios: Vec<f64>,
    /// The relay's CPU per acknowledged push (median over the rounds), milliseconds.
    pub(crate) admin_relay_cpu_ms_per_push: f64,
    pub(crate) mixed_relay_cpu_ms_per_push: f64,
    /// Log entries the connected devices received per stored change (median over the
    /// rounds): the same in both runs when every device sees every change.
    pub(crate) admin_entries_per_change: f64,
    pub(crate) mixed_entries_per_change: f64,
}

/// The comparison of one size.
#[derive(Clone, Debug, Serialize)]
pub(crate) struct Comparison {
    pub(crate) organisation: OrganisationSummary,
    /// Roles of the devices that pushed in the throughput measurements, by device.
    pub(crate) pusher_roles: Vec<String>,
    pub(crate) rounds: usize,
    /// Every run, in the order they ran.
    pub(crate) runs: Vec<LiveRun>,
    pub(crate) throughput: Vec<ThroughputRatio>,
    /// Propagation to every receiver, all rounds' samples together.
    pub(crate) admin_propagation: Latency,
    pub(crate) mixed_propagation: Latency,
    /// The pusher's push → Ack p50 during propagation, median over the rounds.
    pub(crate) admin_push_to_ack_p50_ms: f64,
    pub(crate) mixed_push_to_ack_p50_ms: f64,
    /// (push, receiver) pairs never received, all runs.
    pub(crate) admin_missing: usize,
    pub(crate) mixed_missing: usize,
}

fn median(values: &[f64]) -> f64 {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    let mid = v.len() / 2;
    if v.len().is_multiple_of(2) {
        (v[mid - 1] + v[mid]) / 2.0
    } else {
        v[mid]
    }
}

/// The comparison of the runs of one size (each round has one run of each).
pub(crate) fn compare(
    organisation: &Organisation,
    pushers: &[usize],
    runs: Vec<LiveRun>,
) -> Comparison {
    let of = |roles: Roles| -> Vec<&LiveRun> {
        let mut r: Vec<&LiveRun> = runs.iter().filter(|r| r.roles == roles).collect();
        r.sort_by_key(|r| r.round);
        r
    };
    let (admin, mixed) = (of(Roles::Admin), of(Roles::Mixed));
    let figure = |set: &[&LiveRun], k: usize, get: &dyn Fn(&Throughput) -> f64| -> Vec<f64> {
        set.iter()
            .map(|r| {
                r.throughput
                    .iter()
                    .find(|t| t.pushing_devices == k)
                    .map_or(f64::NAN, get)
            })
            .collect()
    };
    let per_s = |t: &Throughput| t.pushes_per_s;
    let cpu = |t: &Throughput| t.relay_cpu_s * 1e3 / (t.pushes.max(1) as f64);
    let fan_out = |t: &Throughput| t.entries_per_change;
    let throughput = pushers
        .iter()
        .map(|&k| {
            let a = figure(&admin, k, &per_s);
            let m = figure(&mixed, k, &per_s);
            let (admin_median, mixed_median) = (median(&a), median(&m));
            ThroughputRatio {
                pushing_devices: k,
                round_ratios: a.iter().zip(&m).map(|(a, m)| m / a).collect(),
                admin_pushes_per_s: a,
                mixed_pushes_per_s: m,
                admin_median,
                mixed_median,
                ratio: mixed_median / admin_median,
                admin_relay_cpu_ms_per_push: median(&figure(&admin, k, &cpu)),
                mixed_relay_cpu_ms_per_push: median(&figure(&mixed, k, &cpu)),
                admin_entries_per_change: median(&figure(&admin, k, &fan_out)),
                mixed_entries_per_change: median(&figure(&mixed, k, &fan_out)),
            }
        })
        .collect();
    let pooled = |set: &[&LiveRun]| {
        let all: Vec<Duration> = set
            .iter()
            .flat_map(|r| r.receiver_samples.iter().copied())
            .collect();
        Latency::of(&all)
    };
    let ack_p50 = |set: &[&LiveRun]| {
        let p50s: Vec<f64> = set
            .iter()
            .map(|r| r.propagation.push_to_ack.p50_ms)
            .collect();
        median(&p50s)
    };
    let missing = |set: &[&LiveRun]| set.iter().map(|r| r.propagation.missing).sum();
    let most = pushers.iter().copied().max().unwrap_or(0);
    Comparison {
        organisation: organisation.summary.clone(),
        pusher_roles: organisation
            .roles
            .iter()
            .take(most)
            .map(|r| r.as_str().to_string())
            .collect(),
        rounds: admin.len().min(mixed.len()),
        admin_propagation: pooled(&admin),
        mixed_propagation: pooled(&mixed),
        admin_push_to_ack_p50_ms: ack_p50(&admin),
        mixed_push_to_ack_p50_ms: ack_p50(&mixed),
        admin_missing: missing(&admin),
        mixed_missing: missing(&mixed),
        throughput,
        runs,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tenth_are_managers_and_a_tenth_agents() {
        let roles: Vec<Role> = (0..100).map(role_of).collect();
        let count = |r: Role| roles.iter().filter(|x| **x == r).count();
        assert_eq!(count(Role::SalesManager), 10);
        assert_eq!(count(Role::SupportAgent), 10);
        assert_eq!(count(Role::SalesRep), 80);
        assert_eq!(roles[0], Role::SalesRep);
        assert_eq!(
            roles[..4],
            [
                Role::SalesRep,
                Role::SalesManager,
                Role::SupportAgent,
                Role::SalesRep
            ]
        );
    }

    #[test]
    fn medians_of_even_and_odd_counts() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), 2.5);
        assert!(median(&[]).is_nan());
    }
}
