//! The simulator against queueing theory: with Poisson arrivals, exponential handling,
//! one slot per agent and one message per conversation, the router is an M/M/c queue,
//! and the simulated service level, share that waits and average wait must match the
//! Erlang C formula.
//!
//! Durations come from the measured spread across seeds (BENCHMARKS.md): each run is
//! long enough that three standard deviations of the estimate fit inside the tolerance
//! (2 points of service level, 10% of average wait).

use switchboard::sim::scenario::Scenario;

struct Case {
    name: &'static str,
    agents: u32,
    occupancy: f64,
    handling_secs: f64,
    target_secs: u64,
    weeks: u64,
}

const CASES: [Case; 3] = [
    Case {
        name: "3 agents at 80%",
        agents: 3,
        occupancy: 0.80,
        handling_secs: 240.0,
        target_secs: 30,
        weeks: 42,
    },
    Case {
        name: "5 agents at 85%",
        agents: 5,
        occupancy: 0.85,
        handling_secs: 300.0,
        target_secs: 60,
        weeks: 20,
    },
    Case {
        name: "4 agents at 90%",
        agents: 4,
        occupancy: 0.90,
        handling_secs: 180.0,
        target_secs: 30,
        weeks: 42,
    },
];

fn scenario(c: &Case, seed: u64) -> Scenario {
    let per_hour = c.occupancy * f64::from(c.agents) * 3600.0 / c.handling_secs;
    let text = format!(
        r#"
duration_secs = {duration}
seed = {seed}
sample_every_secs = 3600

[[skills]]
id = "support"

[[agents]]
count = {agents}
skills = ["support"]
max_slots = 1

[[arrivals]]
skill = "support"
per_hour = {per_hour}

[handling]
distribution = "exponential"
mean_secs = {handling}

[report]
service_level_target_secs = {target}
"#,
        duration = c.weeks * 7 * 86_400,
        agents = c.agents,
        handling = c.handling_secs,
        target = c.target_secs,
    );
    Scenario::from_toml(&text).expect("valid scenario")
}

#[test]
fn simulated_m_m_c_queues_match_erlang_c() {
    // Two at a time: each simulation runs on its own single-threaded runtime.
    let results: Vec<(usize, switchboard::sim::report::Report)> = std::thread::scope(|s| {
        let handles: Vec<_> = CASES
            .iter()
            .enumerate()
            .map(|(i, c)| {
                s.spawn(move || {
                    (
                        i,
                        switchboard::sim::run(&scenario(c, 42 + i as u64), &mut |_| {}).expect("runs"),
                    )
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("simulation thread"))
            .collect()
    });
    let mut failures = Vec::new();
    for (i, report) in results {
        let c = &CASES[i];
        let e = report.erlang_c.expect("an M/M/c scenario gets an Erlang C prediction");
        let k = report.skills.get("support").expect("skill report");
        println!(
            "{:<16} {:>7} convs  SL {:>6.2}% vs {:>6.2}%  p_wait {:>6.2}% vs {:>6.2}%  avg wait {:>6.1}s vs {:>6.1}s  ({:.1}s wall)",
            c.name,
            k.conversations,
            100.0 * k.service_level,
            100.0 * e.service_level,
            100.0 * k.p_wait,
            100.0 * e.p_wait,
            k.avg_wait_secs,
            e.avg_wait_secs,
            report.wall_secs
        );
        assert_eq!(report.engine_errors, 0);
        assert_eq!(k.unfinished, 0);
        if (k.service_level - e.service_level).abs() > 0.02 {
            failures.push(format!(
                "{}: service level {:.4} vs {:.4}",
                c.name, k.service_level, e.service_level
            ));
        }
        if (k.p_wait - e.p_wait).abs() > 0.02 {
            failures.push(format!("{}: p_wait {:.4} vs {:.4}", c.name, k.p_wait, e.p_wait));
        }
        if (k.avg_wait_secs - e.avg_wait_secs).abs() > 0.10 * e.avg_wait_secs {
            failures.push(format!(
                "{}: average wait {:.1} vs {:.1}",
                c.name, k.avg_wait_secs, e.avg_wait_secs
            ));
        }
        assert!(
            (report.agent_groups["group0"].occupancy - c.occupancy).abs() < 0.02,
            "occupancy"
        );
        // The estimated wait shown at each open, against the waits that followed.
        let est = k.estimated_wait.clone().expect("an estimate at most opens");
        let ratio = est.mean_estimated_secs / est.mean_actual_secs;
        println!(
            "{:<16} estimated wait at open: mean {:>6.1}s vs actual {:>6.1}s (x{ratio:.2}), mean |error| {:>6.1}s over {} convs",
            c.name, est.mean_estimated_secs, est.mean_actual_secs, est.mean_abs_error_secs, est.conversations
        );
        // Measured bias (docs/api.md): high by 12-20% (x1.20 at 80%, x1.17 at 85%, x1.12
        // at 90% occupancy), as a line that grew while service was slow by chance also
        // shows a slow recent pace. Checked within a band, printed for the record.
        if !(0.8..=1.5).contains(&ratio) {
            failures.push(format!("{}: estimated wait x{ratio:.2} the actual", c.name));
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

#[test]
fn the_same_scenario_and_seed_give_the_same_report() {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/scenarios/messaging-day.toml"))
        .expect("scenario");
    let mut sc = Scenario::from_toml(&text).expect("valid");
    sc.duration_secs = 6 * 3600;
    let run = |sc: &Scenario| {
        let mut r = switchboard::sim::run(sc, &mut |_| {}).expect("runs");
        r.wall_secs = 0.0;
        serde_json::to_string(&r).expect("json")
    };
    let (a, b) = (run(&sc), run(&sc));
    assert_eq!(a, b, "two runs of one scenario and seed differ");
    sc.seed += 1;
    let c = run(&sc);
    assert_ne!(a, c, "another seed gives another day");
}

/// Agent groups in the simulator: the scenario's `[[agents]]` names are the agents'
/// groups, so a skill's `group_routing` applies. A cascade keeps the in-house group
/// busier than the vendor's; a 75/25 split gives the vendor about a quarter of the work.
#[test]
fn the_simulator_routes_to_agent_groups() {
    let run = |routing: &str| {
        let text = format!(
            r#"
duration_secs = 86400
seed = 7
sample_every_secs = 600

[[skills]]
id = "support"
group_routing = {routing}

[[agents]]
name = "inhouse"
count = 4
skills = ["support"]
max_slots = 1

[[agents]]
name = "vendor"
count = 4
skills = ["support"]
max_slots = 1

[[arrivals]]
skill = "support"
per_hour = 48

[handling]
distribution = "exponential"
mean_secs = 240
"#
        );
        let sc = Scenario::from_toml(&text).expect("valid scenario");
        let r = switchboard::sim::run(&sc, &mut |_| {}).expect("runs");
        let busy = |g: &str| r.agent_groups[g].occupancy;
        eprintln!(
            "{routing}: in-house occupancy {:.3}, vendor {:.3}",
            busy("inhouse"),
            busy("vendor")
        );
        (busy("inhouse"), busy("vendor"))
    };
    // 48 an hour of 4 minutes each: 3.2 agents busy on average, of 8.
    let (inhouse, vendor) = run(r#"{ cascade = ["inhouse", "vendor"] }"#);
    assert!(
        inhouse > 2.0 * vendor,
        "cascade: in-house {inhouse:.2}, vendor {vendor:.2}"
    );
    let (inhouse, vendor) = run(r#"{ split = { inhouse = 75, vendor = 25 } }"#);
    let vendor_share = vendor / (inhouse + vendor);
    assert!(
        (0.18..0.32).contains(&vendor_share),
        "split: vendor's share {vendor_share:.2}"
    );
}
