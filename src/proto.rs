//! Generated protobuf and gRPC code, one module per protobuf package.

#![allow(clippy::all, missing_docs)]

/// containerd's packages, written here from the wire contract.
pub mod containerd {
    pub mod services {
        pub mod containers {
            pub mod v1 {
                tonic::include_proto!("containerd.services.containers.v1");
            }
        }
        pub mod leases {
            pub mod v1 {
                tonic::include_proto!("containerd.services.leases.v1");
            }
        }
        pub mod events {
            pub mod v1 {
                tonic::include_proto!("containerd.services.events.v1");
            }
        }
        pub mod version {
            pub mod v1 {
                tonic::include_proto!("containerd.services.version.v1");
            }
        }
        pub mod introspection {
            pub mod v1 {
                tonic::include_proto!("containerd.services.introspection.v1");
            }
        }
        pub mod snapshots {
            pub mod v1 {
                tonic::include_proto!("containerd.services.snapshots.v1");
            }
        }
    }
    pub mod events {
        tonic::include_proto!("containerd.events");
    }
}

/// berth's own packages.
pub mod berth {
    pub mod raft {
        pub mod v1 {
            tonic::include_proto!("berth.raft.v1");
        }
    }
    pub mod cluster {
        pub mod v1 {
            tonic::include_proto!("berth.cluster.v1");
        }
    }
}

/// etcd's KV API (the subset `berth bench --system etcd` uses; client only).
pub mod etcdserverpb {
    tonic::include_proto!("etcdserverpb");
}

/// Descriptor set of every proto above, for gRPC reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("berth_descriptor");
