//! Configuration of the simulator: lifecycle timings, faults and the GPU class catalogue.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Everything that shapes one simulator run.
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// How long each lifecycle step takes.
    pub timings: Timings,
    /// The only accepted `Salad-Api-Key`; `None` accepts any non-empty key.
    pub api_key: Option<String>,
    /// Requests allowed per API key in a sliding 60 s window; `0` turns the limit off.
    pub rate_limit_per_minute: u32,
    /// Initial fault knobs (they can be changed later through [`crate::Admin`]).
    pub faults: Faults,
    /// The GPU classes every organization sees.
    pub gpu_classes: Vec<GpuClass>,
    /// Suffix of the generated access domains (`<name>-<16 chars>.<suffix>`).
    pub access_domain_suffix: String,
    /// `container_replicas_quota` of every organization (sum of replicas of started groups).
    pub replicas_quota: u32,
    /// How fast nodes download (seeded), see [`crate::FleetModel`].
    pub fleet: crate::FleetModel,
    /// `max_container_group_reallocations_per_minute` of every organization (over it, a
    /// reallocation answers 429).
    pub reallocations_per_minute: u32,
    /// How long an instance's server takes to answer one queue job.
    pub job_time: std::time::Duration,
}

impl Default for SimConfig {
    fn default() -> Self {
        Self {
            timings: Timings::default(),
            api_key: None,
            rate_limit_per_minute: 240,
            faults: Faults::default(),
            gpu_classes: GpuClass::defaults(),
            access_domain_suffix: "salad.cloud".to_owned(),
            replicas_quota: 100,
            fleet: crate::FleetModel::default(),
            reallocations_per_minute: 10,
            job_time: std::time::Duration::from_secs(5),
        }
    }
}

/// Duration of each lifecycle step.
///
/// A group is `pending` for `image_prepare`, then each instance spends `allocate`, `download`
/// and `create` in those states before it is `running`. `startup` (only with a startup probe)
/// passes before `started`, `readiness` (only with a readiness probe) before `ready`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Timings {
    /// Image pull/compress/store (`pending` on create, `pending_change` on an image change).
    #[serde(with = "millis")]
    pub image_prepare: Duration,
    /// Instance `allocating`.
    #[serde(with = "millis")]
    pub allocate: Duration,
    /// Instance `downloading` (with `pulling_progress`).
    #[serde(with = "millis")]
    pub download: Duration,
    /// Instance `creating`.
    #[serde(with = "millis")]
    pub create: Duration,
    /// From `running` to `started` when the group has a startup probe.
    #[serde(with = "millis")]
    pub startup: Duration,
    /// From `started` to `ready` when the group has a readiness probe.
    #[serde(with = "millis")]
    pub readiness: Duration,
    /// Instance `stopping` before it disappears.
    #[serde(with = "millis")]
    pub stop: Duration,
    /// From `DELETE` until the group answers 404.
    #[serde(with = "millis")]
    pub delete: Duration,
}

impl Default for Timings {
    /// Fast timings for tests: create → running and ready in about 1.5 s.
    fn default() -> Self {
        Self::fast()
    }
}

impl Timings {
    /// Fast timings for tests: create → running and ready in about 1.5 s.
    pub fn fast() -> Self {
        let ms = Duration::from_millis;
        Self {
            image_prepare: ms(300),
            allocate: ms(200),
            download: ms(300),
            create: ms(200),
            startup: ms(200),
            readiness: ms(200),
            stop: ms(200),
            delete: ms(300),
        }
    }

    /// A node's steps as the benchmarks model them on the virtual clock, the download left to
    /// the fleet model (its per-node speed): image preparation 60 s, allocation 45 s, container
    /// creation 20 s, start-up (the checkpoint loading) 60 s.
    pub fn virtual_node() -> Self {
        let s = Duration::from_secs;
        Self {
            image_prepare: s(60),
            allocate: s(45),
            download: s(0),
            create: s(20),
            startup: s(60),
            readiness: s(5),
            stop: s(10),
            delete: s(10),
        }
    }

    /// Slower timings for the demo: create → running and ready in about 15 s.
    pub fn realistic_demo() -> Self {
        let s = Duration::from_secs;
        Self {
            image_prepare: s(3),
            allocate: s(2),
            download: s(5),
            create: s(2),
            startup: s(2),
            readiness: s(1),
            stop: s(2),
            delete: s(3),
        }
    }
}

mod millis {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        Ok(Duration::from_millis(u64::deserialize(d)?))
    }
}

/// Fault knobs. All apply to the public API only (not `/_admin`, not the gateway).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Faults {
    /// Share of API requests answered with a 500 ProblemDetails (0.0..=1.0).
    pub error_rate: f64,
    /// Latency added before every API request is handled, in milliseconds.
    pub latency_ms: u64,
    /// Share of API requests whose connection is closed without any response (0.0..=1.0).
    pub drop_rate: f64,
    /// The next N API requests are answered 429 regardless of the rate limit.
    pub burst_429: u32,
    /// Images containing any of these substrings cannot be pulled: the group goes `failed`
    /// while preparing.
    pub failing_images: Vec<String>,
}

/// A GPU class as `GET /organizations/{org}/gpu-classes` returns it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GpuClass {
    /// Class id (uuid).
    pub id: String,
    /// Display name, e.g. `RTX 4090 (24 GB)`.
    pub name: String,
    /// Hourly price per priority, as decimal strings.
    pub prices: GpuPrices,
    /// Whether the class is flagged as high demand.
    pub is_high_demand: bool,
    /// The resources a container on this class may request; `None` leaves `min_vcpu` …
    /// `max_storage` out of the answer, as the spec allows.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limits: Option<GpuLimits>,
}

/// Resource limits of a GPU class, the optional `min_vcpu` … `max_storage` of the answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct GpuLimits {
    /// Fewest vCPUs.
    pub min_vcpu: u32,
    /// Most vCPUs.
    pub max_vcpu: u32,
    /// Least memory, MB.
    pub min_ram: u32,
    /// Most memory, MB.
    pub max_ram: u32,
    /// Least storage, bytes.
    pub min_storage: u64,
    /// Most storage, bytes.
    pub max_storage: u64,
}

impl GpuLimits {
    /// Most classes (RTX 30 and 40 series, Stable Diffusion Compatible): 1-16 vCPU, 1024-61440 MB, 1 GiB-250 GiB of storage. The spec publishes
    /// no example values for these fields; these are SaladCloud's per-container limits before the
    /// API widened them (the ranges the spec's `ContainerResourceRequirements` descriptions and
    /// system log `resource_*` fields still carry), a plausible choice, not SaladCloud's data.
    pub const TYPICAL: Self = Self {
        min_vcpu: 1,
        max_vcpu: 16,
        min_ram: 1024,
        max_ram: 61_440,
        min_storage: 1 << 30,
        max_storage: 250 << 30,
    };

    /// RTX 5090 nodes, assumed to be newer, larger machines: 1-32 vCPU, 1024-122880 MB, 1 GiB-500
    /// GiB. Made up (no published values), so that the catalogue has a class wider than the rest.
    pub const LARGE: Self = Self {
        min_vcpu: 1,
        max_vcpu: 32,
        min_ram: 1024,
        max_ram: 122_880,
        min_storage: 1 << 30,
        max_storage: 500 << 30,
    };
}

/// Hourly prices of one GPU class, in USD, as the API's decimal strings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GpuPrices {
    /// `high` priority.
    pub high: String,
    /// `medium` priority.
    pub medium: String,
    /// `low` priority.
    pub low: String,
    /// `batch` priority.
    pub batch: String,
}

impl GpuClass {
    fn new(
        id: &str,
        name: &str,
        prices: [&str; 4],
        is_high_demand: bool,
        limits: GpuLimits,
    ) -> Self {
        Self {
            id: id.to_owned(),
            name: name.to_owned(),
            prices: GpuPrices {
                high: prices[0].to_owned(),
                medium: prices[1].to_owned(),
                low: prices[2].to_owned(),
                batch: prices[3].to_owned(),
            },
            is_high_demand,
            limits: Some(limits),
        }
    }

    /// The default catalogue (ids from SaladCloud; medium/low/batch prices and the resource
    /// limits are made up, see [`GpuLimits`]).
    pub fn defaults() -> Vec<Self> {
        vec![
            Self::new(
                "cb6c1931-89b6-4f76-976f-54047320ccc6",
                "RTX 3060 Ti (8 GB)",
                ["0.080", "0.060", "0.050", "0.040"],
                false,
                GpuLimits::TYPICAL,
            ),
            Self::new(
                "f51baccc-dc95-40fb-a5d1-6d0ee0db31d2",
                "RTX 3060 (12 GB)",
                ["0.080", "0.065", "0.050", "0.040"],
                false,
                GpuLimits::TYPICAL,
            ),
            Self::new(
                "a5db5c50-cbcb-4596-ae80-6a0c8090d80f",
                "RTX 3090 (24 GB)",
                ["0.250", "0.200", "0.150", "0.100"],
                false,
                GpuLimits::TYPICAL,
            ),
            Self::new(
                "ed563892-aacd-40f5-80b7-90c9be6c759b",
                "RTX 4090 (24 GB)",
                ["0.300", "0.250", "0.200", "0.160"],
                true,
                GpuLimits::TYPICAL,
            ),
            Self::new(
                "851399fb-7329-4195-a042-d6514b28cf33",
                "RTX 5090 (32 GB)",
                ["0.500", "0.420", "0.350", "0.280"],
                true,
                GpuLimits::LARGE,
            ),
            Self::new(
                "dec851b7-eba7-4457-a319-a01b611a810e",
                "Stable Diffusion Compatible",
                ["0.080", "0.060", "0.050", "0.040"],
                false,
                GpuLimits::TYPICAL,
            ),
        ]
    }
}
