//! The two Services: a headless one giving each broker a stable DNS name (what brokers
//! advertise), and a ClusterIP one clients bootstrap from.

use k8s_openapi::api::core::v1::{Service, ServicePort, ServiceSpec};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::quorum::CONTROLLER_PORT;
use super::{child_meta, names, selector_labels, SERVICE_ROLE_LABEL};
use crate::crd::KafkaCluster;

fn port(name: &str, number: i32) -> ServicePort {
    ServicePort {
        name: Some(name.to_string()),
        port: number,
        target_port: Some(IntOrString::String(name.to_string())),
        protocol: Some("TCP".to_string()),
        ..ServicePort::default()
    }
}

/// The desired headless Service `<name>-brokers`: `<pod>.<name>-brokers.<ns>.svc`
/// resolves for every broker, ready or not (brokers must find each other while starting:
/// a voter is not ready before a majority of voters answers on the `controller` port).
pub fn desired_headless_service(kc: &KafkaCluster) -> Service {
    let mut metadata = child_meta(kc, names::headless_service(kc));
    if let Some(labels) = metadata.labels.as_mut() {
        labels.insert(SERVICE_ROLE_LABEL.to_string(), "brokers".to_string());
    }
    let listeners = &kc.spec.listeners;
    Service {
        metadata,
        spec: Some(ServiceSpec {
            cluster_ip: Some("None".to_string()),
            publish_not_ready_addresses: Some(true),
            selector: Some(selector_labels(kc)),
            ports: Some(vec![
                port("kafka", listeners.kafka_port),
                port("controller", CONTROLLER_PORT),
                port("metrics", listeners.metrics_port),
            ]),
            ..ServiceSpec::default()
        }),
        ..Service::default()
    }
}

/// The desired bootstrap Service `<name>-bootstrap`: ready brokers only, Kafka port.
pub fn desired_bootstrap_service(kc: &KafkaCluster) -> Service {
    let mut metadata = child_meta(kc, names::bootstrap_service(kc));
    if let Some(labels) = metadata.labels.as_mut() {
        labels.insert(SERVICE_ROLE_LABEL.to_string(), "bootstrap".to_string());
    }
    Service {
        metadata,
        spec: Some(ServiceSpec {
            type_: Some("ClusterIP".to_string()),
            selector: Some(selector_labels(kc)),
            ports: Some(vec![port("kafka", kc.spec.listeners.kafka_port)]),
            ..ServiceSpec::default()
        }),
        ..Service::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::test_cluster::demo;

    #[test]
    fn default_cluster_headless_service() {
        insta::assert_yaml_snapshot!(desired_headless_service(&demo()));
    }

    #[test]
    fn default_cluster_bootstrap_service() {
        insta::assert_yaml_snapshot!(desired_bootstrap_service(&demo()));
    }
}
