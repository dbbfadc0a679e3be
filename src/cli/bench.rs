//! `berth bench`: a closed-loop load generator for the containers API.
//!
//! `--concurrency N` tasks each run their own loop: send a request, wait for
//! the answer, record it, send the next. There are therefore always N
//! requests in flight (a *closed* loop), and the numbers answer "how fast is
//! the cluster with N clients busy", not "what latency does a given arrival
//! rate see" (a closed loop never piles up a backlog, so under overload it
//! reports lower latencies than an open-loop generator would: the classic
//! coordinated-omission caveat).
//!
//! # Workloads
//!
//! - `write`: `Create` of new containers whose ids are unique across runs
//!   (`w<48 random bits in hex>-<worker>-<sequence number>`);
//! - `read`: `Get` of `--keys` containers created in a setup phase, picked
//!   uniformly;
//! - `update`: `Update` of one label (`berth.bench/seq`) of a pre-created
//!   container, picked uniformly;
//! - `mixed`: each request is a `Get` with probability `--read-ratio`
//!   (default 0.5), else an `Update` as above.
//!
//! # Comparing with etcd
//!
//! `--system etcd` sends the same load to an etcd cluster through its v3 KV
//! API, so both stores can be measured on the same machine with the same
//! client. Each request does what berth's does, in one round trip, the way
//! Kubernetes uses etcd: a write is a create-if-absent transaction (`Txn`:
//! the key's create revision is 0, then `Put`) of a new key
//! (`/<namespace>/<id>`) whose value is the spec JSON, `AlreadyExists` when
//! the key is there; a read a `Range` of one pre-created key (linearizable
//! unless `--consistency serializable`, which maps to etcd's serializable
//! range; `NotFound` when missing); an update an update-if-present `Txn`
//! that puts the whole value again (etcd has no partial update; berth
//! rewrites the whole record on the server too; `NotFound` when missing).
//!
//! Every container (created by `write` or by setup) carries a spec of
//! `--payload` bytes (an OCI-spec-shaped JSON object, padded), so `Get`
//! answers carry the payload too. Setup names its keys
//! `bench-<payload>b-<i>`: runs with the same payload reuse them
//! (`AlreadyExists` is expected), runs with another payload get their own.
//!
//! # Flags taken from the global ones
//!
//! - `--endpoints`: *all* of them are used: worker `i` talks to endpoint
//!   `i % n`, over one of `--connections-per-endpoint` HTTP/2 connections
//!   (tonic channels) shared by that endpoint's workers. HTTP/2 multiplexes
//!   the workers' requests on a connection; more connections only help when
//!   one connection's stream limit (200 concurrent streams by default in
//!   hyper's server) or its single socket becomes the limit. Repeated
//!   endpoints are counted once; with fewer workers than endpoints, the
//!   last endpoints get no load (`--concurrency 1` uses the first only).
//! - `--namespace`: used as given, *except* `default` (the flag's default
//!   value, and the namespace where containerd users keep real containers),
//!   which is replaced by `bench`: a benchmark leaves thousands of
//!   containers behind and should not do so among real ones by accident.
//!   Pass any other namespace to bench there.
//! - `--consistency`: applies to the `Get`s (`read` and `mixed`); there is
//!   no bench-local flag (a subcommand flag of the same name would clash
//!   with the global one, which clap propagates to every subcommand).
//! - `--timeout`: bounds each request (client side); a request that times
//!   out counts as a `DeadlineExceeded` error.
//!
//! # Measurement window
//!
//! The run is `--warmup` then `--duration`, after which it ends by itself.
//! A request counts when it *finishes* inside the measured window (ops/s =
//! those requests / `--duration`): requests finishing during warmup are not
//! counted, and no request starts after the window ends. The requests still
//! in flight at the end are awaited for at most 2 seconds but never counted
//! (they are reported as `late`, or `abandoned` if they had not finished
//! within those 2 seconds and were dropped).
//!
//! Latencies (of successful requests only) go, in microseconds, into one
//! `hdrhistogram` per worker and operation, merged at the end. Failed
//! requests are counted by gRPC code and reported, not counted as ops.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use clap::ValueEnum;
use hdrhistogram::Histogram;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::transport::Channel;
use tonic::{Code, Request, Status};

use crate::api::request::{CONSISTENCY_HEADER, NAMESPACE_HEADER};
use crate::api::status::MAX_MESSAGE_BYTES;
use crate::cli::client::endpoint;
use crate::cli::containers::OCI_SPEC_TYPE_URL;
use crate::cli::{ConsistencyArg, GlobalArgs, OutputFormat};
use crate::proto::containerd::services::containers::v1 as pb;
use crate::proto::containerd::services::containers::v1::containers_client::ContainersClient;
use crate::proto::etcdserverpb as etcd;
use crate::proto::etcdserverpb::kv_client::KvClient;
use crate::transport;

/// The global `--namespace` default, which the bench does not write into.
const DEFAULT_NAMESPACE: &str = "default";

/// Where the bench runs when `--namespace` is left at its default.
const BENCH_NAMESPACE: &str = "bench";

/// Runtime name of the containers the bench creates (a required field).
const RUNTIME: &str = "io.containerd.runc.v2";

/// The label `update` and `mixed` set.
const UPDATE_LABEL: &str = "berth.bench/seq";

/// Setup creates keys with at least this many requests in flight, whatever
/// `--concurrency` is, so that `--concurrency 1` runs do not wait for a
/// thousand sequential writes first.
const SETUP_MIN_CONCURRENCY: usize = 32;

/// How long requests in flight at the end of the window are awaited. They
/// are not counted either way; waiting lets them finish cleanly instead of
/// being reset, and a request still running after this is stuck.
const END_GRACE: Duration = Duration::from_secs(2);

/// Pause after an `Unavailable` answer (typically a refused or broken
/// connection, which fails instantly), so that a dead endpoint does not
/// turn its workers into busy loops that starve the others of CPU.
const UNAVAILABLE_BACKOFF: Duration = Duration::from_millis(10);

/// Significant decimal digits the latency histograms keep (0.1% precision).
const HISTOGRAM_SIGFIG: u8 = 3;

/// Number of gRPC status codes (0 `Ok` to 16 `Unauthenticated`).
const CODES: usize = 17;

/// How the bench uses the global flags, for `berth bench --help`.
const BENCH_NOTES: &str = "\
Global flags:
  --endpoints    all are used: worker i talks to endpoint i % n
  --namespace    used as given, except `default`, replaced by `bench` (the
                 bench leaves containers behind; keep them apart from real ones)
  --consistency  applies to the reads (read and mixed workloads)
  --timeout      bounds each request; a timed-out request is an error
  --output json  prints one JSON line

Requests count when they finish within --duration, after --warmup; those
still in flight at the end are awaited (2s at most) but not counted.";

/// Spec padding: the JSON is `SPEC_HEAD`, then `x`s, then `SPEC_TAIL`.
const SPEC_HEAD: &str = r#"{"ociVersion":"1.1.0","annotations":{"berth.bench/padding":""#;
const SPEC_TAIL: &str = r#""}}"#;

/// `berth bench`.
#[derive(Debug, clap::Args)]
#[command(after_long_help = BENCH_NOTES)]
pub struct BenchArgs {
    /// What each request does: `write` creates new containers, `read` gets
    /// pre-created ones, `update` sets a label on pre-created ones, `mixed`
    /// does gets and updates (see --read-ratio).
    #[arg(long, value_enum, default_value_t = Workload::Write)]
    pub workload: Workload,
    /// Requests in flight at once: that many tasks, each sending its next
    /// request when the previous one is answered.
    #[arg(long, default_value_t = 16, value_parser = at_least_one)]
    pub concurrency: usize,
    /// How long to measure, e.g. `10s`, `1m`, `500ms`.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    pub duration: Duration,
    /// Load before the measurement starts (not measured), e.g. `1s` or `0s`.
    #[arg(long, default_value = "1s", value_parser = humantime::parse_duration)]
    pub warmup: Duration,
    /// Containers pre-created for read, update and mixed (ignored by write).
    #[arg(long, default_value_t = 1000, value_parser = at_least_one)]
    pub keys: usize,
    /// Fraction of mixed requests that are reads, 0 to 1 [default: 0.5].
    /// Only for `--workload mixed`.
    #[arg(long, value_parser = ratio)]
    pub read_ratio: Option<f64>,
    /// Size of each container's spec (JSON) in bytes; smaller values than
    /// 63 (the JSON without padding) give 63.
    #[arg(long, default_value_t = 1024, value_name = "BYTES")]
    pub payload: usize,
    /// HTTP/2 connections to open to each endpoint; its workers are spread
    /// over them.
    #[arg(long, default_value_t = 1, value_parser = at_least_one)]
    pub connections_per_endpoint: usize,
    /// Threads that drive the load (0: one per CPU). A load generator that
    /// shares a small machine with the nodes it measures takes less of
    /// their CPU with one thread: its tasks then never wake each other
    /// across threads.
    #[arg(long, default_value_t = 0)]
    pub threads: usize,
    /// The store the endpoints run: `berth` (containers API) or `etcd` (its
    /// KV API, the same load as puts and ranges, for comparison).
    #[arg(long, value_enum, default_value_t = System::Berth)]
    pub system: System,
}

/// The store under load.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum System {
    /// berth's containers API.
    Berth,
    /// etcd's v3 KV API.
    Etcd,
}

impl System {
    fn name(self) -> &'static str {
        match self {
            System::Berth => "berth",
            System::Etcd => "etcd",
        }
    }
}

/// What the bench's requests do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Workload {
    /// Create new containers.
    Write,
    /// Get pre-created containers.
    Read,
    /// Get or update pre-created containers (--read-ratio).
    Mixed,
    /// Update a label of pre-created containers.
    Update,
}

impl Workload {
    fn name(self) -> &'static str {
        match self {
            Workload::Write => "write",
            Workload::Read => "read",
            Workload::Mixed => "mixed",
            Workload::Update => "update",
        }
    }

    /// The operations it sends.
    fn ops(self) -> &'static [Op] {
        match self {
            Workload::Write => &[Op::Create],
            Workload::Read => &[Op::Get],
            Workload::Mixed => &[Op::Get, Op::Update],
            Workload::Update => &[Op::Update],
        }
    }

    /// Whether it works on containers made in a setup phase.
    fn needs_keys(self) -> bool {
        self != Workload::Write
    }
}

/// One kind of request; the value indexes [`WorkerStats::per_op`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Create = 0,
    Get = 1,
    Update = 2,
}

impl Op {
    const COUNT: usize = 3;

    fn name(self) -> &'static str {
        match self {
            Op::Create => "create",
            Op::Get => "get",
            Op::Update => "update",
        }
    }
}

fn at_least_one(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(n) if n >= 1 => Ok(n),
        _ => Err(format!("{s:?} is not a positive integer")),
    }
}

fn ratio(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(r) if (0.0..=1.0).contains(&r) => Ok(r),
        _ => Err(format!("{s:?} is not a number from 0 to 1")),
    }
}

/// Runs a benchmark and prints its report (one JSON line with `-o json`).
/// Fails if the flags are inconsistent, an endpoint cannot be reached,
/// setup fails, or not a single measured request succeeded (the report is
/// printed first in that last case).
pub async fn run(global: &GlobalArgs, args: BenchArgs) -> anyhow::Result<()> {
    let plan = Plan::new(global, &args)?;
    let quiet = global.output == OutputFormat::Json;
    let channels = connect(&plan.endpoints, args.connections_per_endpoint, plan.timeout).await?;

    let keys = if args.workload.needs_keys() {
        let started = Instant::now();
        let (keys, created) = setup(&plan, &channels, args.keys, args.concurrency).await?;
        if !quiet {
            eprintln!(
                "setup: {} keys in namespace {:?} ready in {:.2}s ({created} created, {} already there)",
                keys.len(),
                plan.namespace,
                started.elapsed().as_secs_f64(),
                keys.len() - created,
            );
        }
        keys
    } else {
        Vec::new()
    };

    if !quiet {
        eprintln!(
            "running {} at concurrency {} against {} endpoint(s): {} warmup + {} measured",
            args.workload.name(),
            args.concurrency,
            plan.endpoints.len(),
            humantime::format_duration(args.warmup),
            humantime::format_duration(args.duration),
        );
    }
    let start = Instant::now();
    let window = Window::new(start, args.warmup, args.duration)?;
    let shared = Arc::new(Shared {
        requests: plan.requests.clone(),
        workload: args.workload,
        read_ratio: args.read_ratio.unwrap_or(0.5),
        keys,
        run_prefix: format!("w{:012x}", rand::random::<u64>() >> 16),
        window,
    });
    let results = measure(&shared, &channels, args.concurrency, plan.system).await?;

    let report = Report::new(&plan, &args, &results)?;
    match global.output {
        OutputFormat::Json => println!("{}", serde_json::to_string(&report)?),
        OutputFormat::Table => report.print_table(),
    }
    if report.total.ops == 0 {
        bail!("no request succeeded in the measured window");
    }
    Ok(())
}

/// The checked flags.
struct Plan {
    endpoints: Vec<String>,
    namespace: String,
    consistency: ConsistencyArg,
    timeout: Duration,
    requests: Arc<Requests>,
    system: System,
}

impl Plan {
    fn new(global: &GlobalArgs, args: &BenchArgs) -> anyhow::Result<Plan> {
        if args.duration.is_zero() {
            bail!("--duration must be more than zero");
        }
        if args.read_ratio.is_some() && args.workload != Workload::Mixed {
            bail!("--read-ratio is only for --workload mixed");
        }
        // Room for the rest of the message under the server's limit.
        let max_payload = MAX_MESSAGE_BYTES - 64 * 1024;
        if args.payload > max_payload {
            bail!("--payload must be at most {max_payload} bytes");
        }
        let mut endpoints: Vec<String> = Vec::with_capacity(global.endpoints.len());
        for address in &global.endpoints {
            let address = address.trim();
            if !address.is_empty() && !endpoints.iter().any(|e| e == address) {
                endpoints.push(address.to_string());
            }
        }
        if endpoints.is_empty() {
            bail!("no endpoint given (--endpoints)");
        }
        let namespace = if global.namespace == DEFAULT_NAMESPACE {
            BENCH_NAMESPACE
        } else {
            global.namespace.as_str()
        };
        crate::store::validate::identifier(namespace)
            .map_err(|e| anyhow!("namespace {namespace:?}: {e}"))?;
        let timeout = Duration::try_from_secs_f64(global.timeout.max(0.001))
            .map_err(|e| anyhow!("--timeout {}: {e}", global.timeout))?;
        let requests = Requests {
            namespace: namespace
                .parse()
                .with_context(|| format!("namespace {namespace:?} as gRPC metadata"))?,
            serializable_reads: global.consistency == ConsistencyArg::Serializable,
            spec: spec_payload(args.payload),
            etcd_prefix: format!("/{namespace}/"),
        };
        Ok(Plan {
            endpoints,
            namespace: namespace.to_string(),
            consistency: global.consistency,
            timeout,
            requests: Arc::new(requests),
            system: args.system,
        })
    }
}

/// The spec every created container carries: JSON of exactly `bytes` bytes
/// (or the smallest padded JSON if `bytes` is smaller). Built once; each
/// `Create` clones it, since prost messages own their bytes.
fn spec_payload(bytes: usize) -> prost_types::Any {
    let padding = bytes.saturating_sub(SPEC_HEAD.len() + SPEC_TAIL.len());
    let mut value = Vec::with_capacity(SPEC_HEAD.len() + padding + SPEC_TAIL.len());
    value.extend_from_slice(SPEC_HEAD.as_bytes());
    value.resize(value.len() + padding, b'x');
    value.extend_from_slice(SPEC_TAIL.as_bytes());
    prost_types::Any {
        type_url: OCI_SPEC_TYPE_URL.to_string(),
        value,
    }
}

/// Opens `per_endpoint` channels (HTTP/2 connections) to each endpoint,
/// eagerly, so that an unreachable endpoint fails the run before it starts
/// rather than showing up as a stream of errors.
async fn connect(
    endpoints: &[String],
    per_endpoint: usize,
    timeout: Duration,
) -> anyhow::Result<Vec<Vec<Channel>>> {
    let mut all = Vec::with_capacity(endpoints.len());
    for address in endpoints {
        let mut channels = Vec::with_capacity(per_endpoint);
        for _ in 0..per_endpoint {
            let channel = transport::connect_channel(endpoint(address)?.timeout(timeout), address)
                .await
                .with_context(|| format!("connecting to {address}"))?;
            channels.push(channel);
        }
        all.push(channels);
    }
    Ok(all)
}

/// Worker `i`'s endpoint: `i % n`.
fn endpoint_of(worker: usize, endpoints: usize) -> usize {
    worker % endpoints
}

/// A worker's client of the store under load.
enum Client {
    Berth(ContainersClient<Channel>),
    Etcd(KvClient<Channel>),
}

/// A client for worker `i`: on endpoint `i % n`, on that endpoint's
/// connection `(i / n) % per_endpoint`, so each endpoint's workers are
/// spread evenly over its connections. Cloning a channel shares its
/// connection.
fn client_for(channels: &[Vec<Channel>], worker: usize, system: System) -> Client {
    let connections = &channels[endpoint_of(worker, channels.len())];
    let channel = connections[(worker / channels.len()) % connections.len()].clone();
    match system {
        System::Berth => Client::Berth(
            ContainersClient::new(channel)
                .max_decoding_message_size(MAX_MESSAGE_BYTES)
                .max_encoding_message_size(MAX_MESSAGE_BYTES),
        ),
        System::Etcd => Client::Etcd(
            KvClient::new(channel)
                .max_decoding_message_size(MAX_MESSAGE_BYTES)
                .max_encoding_message_size(MAX_MESSAGE_BYTES),
        ),
    }
}

/// Builds and sends the bench's requests. Everything that is the same for
/// every request (namespace header, spec) is built once here.
struct Requests {
    /// The namespace header; cloning it shares its bytes.
    namespace: MetadataValue<Ascii>,
    /// Whether `Get`s ask for serializable reads.
    serializable_reads: bool,
    spec: prost_types::Any,
    /// etcd keys are `/<namespace>/<id>`.
    etcd_prefix: String,
}

impl Requests {
    /// A request in the bench's namespace; `serializable` marks a read that
    /// may be served from the node's local state.
    fn request<T>(&self, message: T, serializable: bool) -> Request<T> {
        let mut request = Request::new(message);
        let metadata = request.metadata_mut();
        metadata.insert(NAMESPACE_HEADER, self.namespace.clone());
        if serializable {
            metadata.insert(
                CONSISTENCY_HEADER,
                MetadataValue::from_static("serializable"),
            );
        }
        request
    }

    /// An etcd transaction that puts `id`'s key with the spec as its value
    /// if the key is absent (`create`) or present (not `create`); the
    /// error when the condition fails is berth's for the same request.
    async fn etcd_put_if(
        &self,
        kv: &mut KvClient<Channel>,
        id: &str,
        create: bool,
    ) -> Result<(), Status> {
        use etcd::compare::{CompareResult, CompareTarget, TargetUnion};
        let key = self.etcd_key(id);
        let condition = etcd::Compare {
            result: if create {
                CompareResult::Equal
            } else {
                CompareResult::Greater
            } as i32,
            target: CompareTarget::Create as i32,
            key: key.clone(),
            target_union: Some(TargetUnion::CreateRevision(0)),
            range_end: Vec::new(),
        };
        let put = etcd::RequestOp {
            request: Some(etcd::request_op::Request::RequestPut(etcd::PutRequest {
                key,
                value: self.spec.value.clone(),
                lease: 0,
            })),
        };
        let txn = etcd::TxnRequest {
            compare: vec![condition],
            success: vec![put],
            failure: Vec::new(),
        };
        match (kv.txn(txn).await?.into_inner().succeeded, create) {
            (true, _) => Ok(()),
            (false, true) => Err(Status::already_exists(format!("etcd key for {id} exists"))),
            (false, false) => Err(Status::not_found(format!("etcd key for {id} not found"))),
        }
    }

    fn etcd_key(&self, id: &str) -> Vec<u8> {
        format!("{}{id}", self.etcd_prefix).into_bytes()
    }

    async fn create(&self, client: &mut Client, id: String) -> Result<(), Status> {
        let client = match client {
            Client::Berth(client) => client,
            Client::Etcd(kv) => return self.etcd_put_if(kv, &id, true).await,
        };
        let container = pb::Container {
            id,
            runtime: Some(pb::container::Runtime {
                name: RUNTIME.to_string(),
                options: None,
            }),
            spec: Some(self.spec.clone()),
            ..Default::default()
        };
        let request = self.request(
            pb::CreateContainerRequest {
                container: Some(container),
            },
            false,
        );
        client.create(request).await.map(drop)
    }

    async fn get(&self, client: &mut Client, id: String, serializable: bool) -> Result<(), Status> {
        match client {
            Client::Berth(client) => client
                .get(self.request(pb::GetContainerRequest { id }, serializable))
                .await
                .map(drop),
            Client::Etcd(kv) => {
                let range = etcd::RangeRequest {
                    key: self.etcd_key(&id),
                    serializable,
                    ..Default::default()
                };
                // Like berth's Get, a missing key is an error.
                match kv.range(range).await?.into_inner().kvs.is_empty() {
                    true => Err(Status::not_found(format!("etcd key for {id} not found"))),
                    false => Ok(()),
                }
            }
        }
    }

    async fn update(&self, client: &mut Client, id: String, value: String) -> Result<(), Status> {
        let client = match client {
            Client::Berth(client) => client,
            Client::Etcd(kv) => return self.etcd_put_if(kv, &id, false).await,
        };
        let container = pb::Container {
            id,
            labels: [(UPDATE_LABEL.to_string(), value)].into(),
            ..Default::default()
        };
        let mask = prost_types::FieldMask {
            paths: vec![format!("labels.{UPDATE_LABEL}")],
        };
        let request = self.request(
            pb::UpdateContainerRequest {
                container: Some(container),
                update_mask: Some(mask),
            },
            false,
        );
        client.update(request).await.map(drop)
    }
}

/// Creates the `keys` containers the read, update and mixed workloads use,
/// with many requests in flight. Containers already there (from an earlier
/// run with the same payload) are fine. Returns the ids and how many were
/// created now.
async fn setup(
    plan: &Plan,
    channels: &[Vec<Channel>],
    keys: usize,
    concurrency: usize,
) -> anyhow::Result<(Vec<String>, usize)> {
    let payload = plan.requests.spec.value.len();
    let ids: Arc<Vec<String>> =
        Arc::new((0..keys).map(|i| format!("bench-{payload}b-{i}")).collect());
    let next = Arc::new(AtomicUsize::new(0));
    let mut tasks = JoinSet::new();
    for worker in 0..concurrency.max(SETUP_MIN_CONCURRENCY).min(keys) {
        let mut client = client_for(channels, worker, plan.system);
        let (ids, next, requests) = (ids.clone(), next.clone(), plan.requests.clone());
        tasks.spawn(async move {
            let mut created = 0;
            while let Some(id) = ids.get(next.fetch_add(1, Ordering::Relaxed)) {
                match requests.create(&mut client, id.clone()).await {
                    Ok(()) => created += 1,
                    Err(status) if status.code() == Code::AlreadyExists => {}
                    Err(status) => bail!(
                        "setup: creating {id}: {} ({:?})",
                        status.message(),
                        status.code()
                    ),
                }
            }
            Ok(created)
        });
    }
    let mut created = 0;
    while let Some(joined) = tasks.join_next().await {
        created += joined.context("setup task")??;
    }
    // A linearizable read through each endpoint returns only once that node
    // has applied every write committed before it, i.e. all of setup. After
    // this, serializable reads on followers find every key.
    for (index, address) in plan.endpoints.iter().enumerate() {
        let mut client = client_for(channels, index, plan.system);
        let id = ids.first().cloned().unwrap_or_default();
        plan.requests
            .get(&mut client, id, false)
            .await
            .map_err(|s| {
                anyhow!(
                    "setup: reading back through {address}: {} ({:?})",
                    s.message(),
                    s.code()
                )
            })?;
    }
    let ids = Arc::try_unwrap(ids).unwrap_or_else(|shared| shared.as_ref().clone());
    Ok((ids, created))
}

/// When requests count.
#[derive(Clone, Copy)]
struct Window {
    /// End of warmup: requests finishing from here on count.
    measure_start: Instant,
    /// End of measurement: no request starts from here on, and requests
    /// finishing after it do not count.
    deadline: Instant,
    /// Requests still running here are dropped.
    hard_stop: Instant,
}

impl Window {
    fn new(start: Instant, warmup: Duration, duration: Duration) -> anyhow::Result<Window> {
        let too_long = || anyhow!("--warmup plus --duration is too long");
        let measure_start = start.checked_add(warmup).ok_or_else(too_long)?;
        let deadline = measure_start.checked_add(duration).ok_or_else(too_long)?;
        let hard_stop = deadline.checked_add(END_GRACE).ok_or_else(too_long)?;
        Ok(Window {
            measure_start,
            deadline,
            hard_stop,
        })
    }
}

/// What every worker reads.
struct Shared {
    requests: Arc<Requests>,
    workload: Workload,
    read_ratio: f64,
    /// Pre-created ids (empty for `write`).
    keys: Vec<String>,
    /// Makes `write` ids unique across runs.
    run_prefix: String,
    window: Window,
}

impl Shared {
    /// The next operation of a worker.
    fn next_op(&self, rng: &mut SmallRng) -> Op {
        match self.workload {
            Workload::Write => Op::Create,
            Workload::Read => Op::Get,
            Workload::Update => Op::Update,
            Workload::Mixed => {
                if rng.random::<f64>() < self.read_ratio {
                    Op::Get
                } else {
                    Op::Update
                }
            }
        }
    }

    /// A uniformly chosen pre-created id.
    fn random_key(&self, rng: &mut SmallRng) -> String {
        if self.keys.is_empty() {
            return String::new();
        }
        self.keys[rng.random_range(0..self.keys.len())].clone()
    }

    /// Sends one request; `seq` is the worker's request number.
    async fn call(
        &self,
        client: &mut Client,
        op: Op,
        worker: usize,
        seq: u64,
        key: String,
    ) -> Result<(), Status> {
        match op {
            Op::Create => {
                self.requests
                    .create(client, format!("{}-{worker}-{seq}", self.run_prefix))
                    .await
            }
            Op::Get => {
                self.requests
                    .get(client, key, self.requests.serializable_reads)
                    .await
            }
            Op::Update => self.requests.update(client, key, seq.to_string()).await,
        }
    }
}

/// Runs `concurrency` workers for the window and returns each one's
/// statistics with its index.
async fn measure(
    shared: &Arc<Shared>,
    channels: &[Vec<Channel>],
    concurrency: usize,
    system: System,
) -> anyhow::Result<Vec<(usize, WorkerStats)>> {
    let mut tasks = JoinSet::new();
    for index in 0..concurrency {
        let client = client_for(channels, index, system);
        let rng = SmallRng::from_rng(&mut rand::rng());
        let stats = WorkerStats::new(shared.workload.ops())?;
        let shared = shared.clone();
        tasks.spawn(async move { (index, worker(index, client, rng, stats, shared).await) });
    }
    let mut results = Vec::with_capacity(concurrency);
    while let Some(joined) = tasks.join_next().await {
        results.push(joined.context("bench worker")?);
    }
    results.sort_by_key(|(index, _)| *index);
    Ok(results)
}

/// One worker's loop: one request at a time until the window ends.
async fn worker(
    index: usize,
    mut client: Client,
    mut rng: SmallRng,
    mut stats: WorkerStats,
    shared: Arc<Shared>,
) -> WorkerStats {
    let window = shared.window;
    let needs_key = shared.workload.needs_keys();
    let mut seq: u64 = 0;
    loop {
        let op = shared.next_op(&mut rng);
        let key = if needs_key {
            shared.random_key(&mut rng)
        } else {
            String::new()
        };
        let started = Instant::now();
        if started >= window.deadline {
            break;
        }
        let call = shared.call(&mut client, op, index, seq, key);
        seq += 1;
        let Ok(result) = tokio::time::timeout_at(window.hard_stop, call).await else {
            stats.abandoned += 1;
            break;
        };
        let finished = Instant::now();
        if finished > window.deadline {
            stats.late += 1;
            break;
        }
        let failure = result.err().map(|status| status.code());
        if finished >= window.measure_start
            && let Some(tally) = stats.per_op[op as usize].as_mut()
        {
            match failure {
                None => {
                    let elapsed = finished - started;
                    tally.record_ok(u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX));
                }
                Some(code) => tally.errors[code_index(code)] += 1,
            }
        }
        if failure == Some(Code::Unavailable) {
            let resume = (Instant::now() + UNAVAILABLE_BACKOFF).min(window.deadline);
            tokio::time::sleep_until(resume).await;
        }
    }
    stats
}

fn code_index(code: Code) -> usize {
    (code as usize).min(CODES - 1)
}

/// Counts of one operation (or of a merge of several).
struct Tally {
    ok: u64,
    /// Failed requests, indexed by gRPC code.
    errors: [u64; CODES],
    /// Latencies of the successful requests, in microseconds.
    latency: Histogram<u64>,
}

impl Tally {
    fn new() -> anyhow::Result<Tally> {
        // Auto-resizing: it starts small and grows to the largest value
        // recorded, so hundreds of workers cost little memory.
        let latency =
            Histogram::new(HISTOGRAM_SIGFIG).map_err(|e| anyhow!("latency histogram: {e}"))?;
        Ok(Tally {
            ok: 0,
            errors: [0; CODES],
            latency,
        })
    }

    /// Counts a successful request that took `micros`.
    fn record_ok(&mut self, micros: u64) {
        self.ok += 1;
        // `record` grows the histogram as needed; it fails only past
        // `i64::MAX / 2` (never, in microseconds), where clamping will do.
        // (`saturating_record` alone would clamp without growing.)
        if self.latency.record(micros).is_err() {
            self.latency.saturating_record(micros);
        }
    }

    fn add(&mut self, other: &Tally) -> anyhow::Result<()> {
        self.ok += other.ok;
        for (sum, n) in self.errors.iter_mut().zip(other.errors) {
            *sum += n;
        }
        self.latency
            .add(&other.latency)
            .map_err(|e| anyhow!("merging latency histograms: {e}"))
    }
}

/// One worker's results.
struct WorkerStats {
    /// Indexed by `Op`; `None` for operations its workload does not send
    /// (each histogram takes tens of KiB, times the workers).
    per_op: [Option<Tally>; Op::COUNT],
    /// Requests that finished after the window (not counted).
    late: u64,
    /// Requests dropped, unfinished, at the hard stop (not counted).
    abandoned: u64,
}

impl WorkerStats {
    fn new(ops: &[Op]) -> anyhow::Result<WorkerStats> {
        let mut per_op = [None, None, None];
        for op in ops {
            per_op[*op as usize] = Some(Tally::new()?);
        }
        Ok(WorkerStats {
            per_op,
            late: 0,
            abandoned: 0,
        })
    }
}

/// The report, as printed in JSON (field order kept).
#[derive(Serialize)]
struct Report {
    system: &'static str,
    workload: &'static str,
    namespace: String,
    /// Read consistency of the `Get`s.
    consistency: &'static str,
    concurrency: usize,
    endpoints: Vec<String>,
    connections_per_endpoint: usize,
    /// Threads that drove the load.
    threads: usize,
    payload_bytes: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    keys: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    read_ratio: Option<f64>,
    warmup_s: f64,
    duration_s: f64,
    #[serde(flatten)]
    total: Stats,
    late: u64,
    abandoned: u64,
    by_op: BTreeMap<&'static str, Stats>,
    by_endpoint: BTreeMap<String, Stats>,
}

/// Results of a set of requests.
#[derive(Clone, Serialize)]
struct Stats {
    ops: u64,
    ops_per_sec: f64,
    /// Failed requests by gRPC code name (e.g. `Unavailable`).
    errors: BTreeMap<String, u64>,
    /// Absent when no request succeeded.
    latency_ms: Option<Latency>,
}

/// Latency quantiles in milliseconds (microsecond resolution).
#[derive(Clone, Serialize)]
struct Latency {
    p50: f64,
    p90: f64,
    p99: f64,
    p999: f64,
    max: f64,
    mean: f64,
}

impl Stats {
    fn new(tally: &Tally, duration: Duration) -> Stats {
        let errors = tally
            .errors
            .iter()
            .enumerate()
            .filter(|(_, n)| **n > 0)
            .map(|(code, n)| (format!("{:?}", Code::from_i32(code as i32)), *n))
            .collect();
        let h = &tally.latency;
        let ms = |micros: u64| micros as f64 / 1000.0;
        let latency = (tally.ok > 0).then(|| Latency {
            p50: ms(h.value_at_quantile(0.50)),
            p90: ms(h.value_at_quantile(0.90)),
            p99: ms(h.value_at_quantile(0.99)),
            p999: ms(h.value_at_quantile(0.999)),
            max: ms(h.max()),
            mean: h.mean().round() / 1000.0,
        });
        let ops_per_sec = (tally.ok as f64 / duration.as_secs_f64() * 10.0).round() / 10.0;
        Stats {
            ops: tally.ok,
            ops_per_sec,
            errors,
            latency_ms: latency,
        }
    }

    fn error_total(&self) -> u64 {
        self.errors.values().sum()
    }
}

impl Report {
    fn new(
        plan: &Plan,
        args: &BenchArgs,
        results: &[(usize, WorkerStats)],
    ) -> anyhow::Result<Report> {
        let ops = args.workload.ops();
        let mut total = Tally::new()?;
        let mut by_op = Vec::with_capacity(ops.len());
        for _ in ops {
            by_op.push(Tally::new()?);
        }
        let mut by_endpoint = Vec::with_capacity(plan.endpoints.len());
        for _ in &plan.endpoints {
            by_endpoint.push(Tally::new()?);
        }
        let (mut late, mut abandoned) = (0, 0);
        for (index, stats) in results {
            late += stats.late;
            abandoned += stats.abandoned;
            for (op, sum) in ops.iter().zip(&mut by_op) {
                let Some(tally) = &stats.per_op[*op as usize] else {
                    continue;
                };
                sum.add(tally)?;
                total.add(tally)?;
                by_endpoint[endpoint_of(*index, plan.endpoints.len())].add(tally)?;
            }
        }
        let duration = args.duration;
        Ok(Report {
            system: plan.system.name(),
            workload: args.workload.name(),
            namespace: plan.namespace.clone(),
            consistency: match plan.consistency {
                ConsistencyArg::Linearizable => "linearizable",
                ConsistencyArg::Serializable => "serializable",
            },
            concurrency: args.concurrency,
            endpoints: plan.endpoints.clone(),
            connections_per_endpoint: args.connections_per_endpoint,
            threads: tokio::runtime::Handle::current().metrics().num_workers(),
            payload_bytes: plan.requests.spec.value.len(),
            keys: args.workload.needs_keys().then_some(args.keys),
            read_ratio: (args.workload == Workload::Mixed).then(|| args.read_ratio.unwrap_or(0.5)),
            warmup_s: args.warmup.as_secs_f64(),
            duration_s: duration.as_secs_f64(),
            total: Stats::new(&total, duration),
            late,
            abandoned,
            by_op: ops
                .iter()
                .zip(&by_op)
                .map(|(op, tally)| (op.name(), Stats::new(tally, duration)))
                .collect(),
            by_endpoint: plan
                .endpoints
                .iter()
                .cloned()
                .zip(by_endpoint.iter().map(|t| Stats::new(t, duration)))
                .collect(),
        })
    }

    /// The report for people: settings, then one row per operation (and a
    /// total when there are several) and per endpoint (when there are
    /// several).
    fn print_table(&self) {
        let workload = match self.read_ratio {
            Some(ratio) => format!("{} (read ratio {ratio})", self.workload),
            None => self.workload.to_string(),
        };
        let reads = self.by_op.contains_key(Op::Get.name());
        println!("system        {}", self.system);
        println!("workload      {workload}");
        println!("namespace     {}", self.namespace);
        if reads {
            println!("consistency   {}", self.consistency);
        }
        println!(
            "endpoints     {} ({}), {} connection(s) each",
            self.endpoints.len(),
            self.endpoints.join(", "),
            self.connections_per_endpoint
        );
        println!(
            "concurrency   {} (driven by {} thread(s))",
            self.concurrency, self.threads
        );
        println!("payload       {} bytes", self.payload_bytes);
        if let Some(keys) = self.keys {
            println!("keys          {keys}");
        }
        println!(
            "duration      {}s (after {}s warmup)",
            self.duration_s, self.warmup_s
        );
        println!("ops           {}", self.total.ops);
        println!("ops/s         {:.1}", self.total.ops_per_sec);
        println!("errors        {}", describe_errors(&self.total.errors));
        if self.late + self.abandoned > 0 {
            println!(
                "not counted   {} finished after the deadline, {} abandoned",
                self.late, self.abandoned
            );
        }
        println!();
        println!(
            "{:<22} {:>9} {:>10} {:>7} {:>9} {:>9} {:>9} {:>9} {:>9}",
            "latency (ms)", "ops", "ops/s", "errors", "p50", "p90", "p99", "p99.9", "max"
        );
        for (name, stats) in &self.by_op {
            print_row(name, stats);
        }
        if self.by_op.len() > 1 {
            print_row("all", &self.total);
        }
        if self.endpoints.len() > 1 {
            for address in &self.endpoints {
                if let Some(stats) = self.by_endpoint.get(address) {
                    print_row(address, stats);
                }
            }
        }
    }
}

fn print_row(name: &str, stats: &Stats) {
    let quantiles = match &stats.latency_ms {
        Some(l) => format!(
            "{:>9.3} {:>9.3} {:>9.3} {:>9.3} {:>9.3}",
            l.p50, l.p90, l.p99, l.p999, l.max
        ),
        None => format!("{:>9} {:>9} {:>9} {:>9} {:>9}", "-", "-", "-", "-", "-"),
    };
    println!(
        "{name:<22} {:>9} {:>10.1} {:>7} {quantiles}",
        stats.ops,
        stats.ops_per_sec,
        stats.error_total()
    );
}

fn describe_errors(errors: &BTreeMap<String, u64>) -> String {
    if errors.is_empty() {
        return "none".to_string();
    }
    errors
        .iter()
        .map(|(code, n)| format!("{code} {n}"))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec_payload_is_json_of_the_requested_size() {
        for size in [0, 62, 63, 64, 1024, 65_536] {
            let spec = spec_payload(size);
            assert_eq!(
                spec.value.len(),
                size.max(SPEC_HEAD.len() + SPEC_TAIL.len()),
                "{size}"
            );
            let json: serde_json::Value = serde_json::from_slice(&spec.value).expect("valid JSON");
            assert_eq!(json["ociVersion"], "1.1.0");
        }
    }

    #[test]
    fn workers_are_spread_over_endpoints_then_connections() {
        // 3 endpoints, 2 connections each: workers 0..6 hit every
        // (endpoint, connection) pair once.
        let pairs: Vec<(usize, usize)> = (0..6).map(|w| (endpoint_of(w, 3), (w / 3) % 2)).collect();
        assert_eq!(pairs, [(0, 0), (1, 0), (2, 0), (0, 1), (1, 1), (2, 1)]);
    }

    #[test]
    fn tallies_merge() {
        let mut a = Tally::new().expect("histogram");
        let mut b = Tally::new().expect("histogram");
        a.record_ok(1_000);
        b.record_ok(3_000_000);
        b.errors[code_index(Code::Unavailable)] = 2;
        a.add(&b).expect("merge");
        let stats = Stats::new(&a, Duration::from_secs(2));
        assert_eq!(stats.ops, 2);
        assert_eq!(stats.ops_per_sec, 1.0);
        assert_eq!(
            stats.errors,
            BTreeMap::from([("Unavailable".to_string(), 2)])
        );
        let latency = stats.latency_ms.expect("latency");
        assert_eq!(latency.p50, 1.0);
        assert!((latency.max - 3000.0).abs() < 3.0, "{}", latency.max);
    }
}
