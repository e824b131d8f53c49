//! Rich error details (`google.rpc.Status` in `grpc-status-details-bin`) against Python's
//! grpcio-status: details grpcore writes are read by `rpc_status.from_call`, and details a
//! grpcio server writes with `rpc_status.to_status` are read by grpcore.

mod common;

use std::collections::HashMap;
use std::process::Command;
use std::time::Duration;

use common::*;
use grpcore::error_details::*;
use grpcore::{BytesCodec, CallOptions, ChannelBuilder, Code, Environment, Method, ServerBuilder, ServiceBuilder, Status};
use serde_json::{json, Value};

const FAIL: Method<Vec<u8>, Vec<u8>, BytesCodec> = Method::unary("/grpcore.test.Rich/Fail");

fn every_standard_detail() -> Vec<ErrorDetail> {
    vec![
        ErrorDetail::ErrorInfo(ErrorInfo {
            reason: "QUOTA".into(),
            domain: "grpcore.test".into(),
            metadata: HashMap::from([("resource".to_string(), "r1".to_string())]),
        }),
        ErrorDetail::RetryInfo(RetryInfo { retry_delay: Some(Duration::new(1, 500_000_000)) }),
        ErrorDetail::DebugInfo(DebugInfo { stack_entries: vec!["main".into(), "handler".into()], detail: "dbg".into() }),
        ErrorDetail::QuotaFailure(QuotaFailure { violations: vec![QuotaViolation { subject: "clientip:1".into(), description: "daily".into() }] }),
        ErrorDetail::PreconditionFailure(PreconditionFailure {
            violations: vec![PreconditionViolation { kind: "TOS".into(), subject: "user".into(), description: "not accepted".into() }],
        }),
        ErrorDetail::BadRequest(BadRequest { field_violations: vec![FieldViolation { field: "name".into(), description: "empty".into() }] }),
        ErrorDetail::RequestInfo(RequestInfo { request_id: "req-1".into(), serving_data: "shard 3".into() }),
        ErrorDetail::ResourceInfo(ResourceInfo {
            resource_type: "table".into(),
            resource_name: "users".into(),
            owner: "team".into(),
            description: "locked".into(),
        }),
        ErrorDetail::Help(Help { links: vec![HelpLink { description: "docs".into(), url: "https://example.com".into() }] }),
        ErrorDetail::LocalizedMessage(LocalizedMessage { locale: "fr-CH".into(), message: "non".into() }),
    ]
}

#[test]
fn grpcio_status_reads_the_details_grpcore_writes() {
    let env = Environment::new(1);
    let service = ServiceBuilder::new("grpcore.test.Rich")
        .add_unary(&FAIL, |_req: Vec<u8>, _ctx| async move {
            Err::<Vec<u8>, _>(Status::with_error_details(Code::ResourceExhausted, "slow down", every_standard_detail()))
        })
        .build();
    let server = ServerBuilder::new(&env).register_service(service).bind("127.0.0.1:0").build().unwrap();
    let output = Command::new(python())
        .args(["tests/peers/python/rich_status.py", "client", &format!("127.0.0.1:{}", server.port()), FAIL.path()])
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let seen: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(seen["code"], Code::ResourceExhausted as i32);
    assert_eq!(seen["message"], "slow down");
    let details = seen["details"].as_array().unwrap();
    let by_type: HashMap<&str, &Value> = details.iter().map(|d| (d["type"].as_str().unwrap(), &d["value"])).collect();
    assert_eq!(details.len(), 10, "{details:#?}");
    assert_eq!(by_type["google.rpc.ErrorInfo"], &json!({"reason": "QUOTA", "domain": "grpcore.test", "metadata": {"resource": "r1"}}));
    assert_eq!(by_type["google.rpc.RetryInfo"], &json!({"retry_delay": "1.500s"}));
    assert_eq!(by_type["google.rpc.DebugInfo"], &json!({"stack_entries": ["main", "handler"], "detail": "dbg"}));
    assert_eq!(by_type["google.rpc.QuotaFailure"], &json!({"violations": [{"subject": "clientip:1", "description": "daily"}]}));
    assert_eq!(
        by_type["google.rpc.PreconditionFailure"],
        &json!({"violations": [{"type": "TOS", "subject": "user", "description": "not accepted"}]})
    );
    assert_eq!(by_type["google.rpc.BadRequest"], &json!({"field_violations": [{"field": "name", "description": "empty"}]}));
    assert_eq!(by_type["google.rpc.RequestInfo"], &json!({"request_id": "req-1", "serving_data": "shard 3"}));
    assert_eq!(
        by_type["google.rpc.ResourceInfo"],
        &json!({"resource_type": "table", "resource_name": "users", "owner": "team", "description": "locked"})
    );
    assert_eq!(by_type["google.rpc.Help"], &json!({"links": [{"description": "docs", "url": "https://example.com"}]}));
    assert_eq!(by_type["google.rpc.LocalizedMessage"], &json!({"locale": "fr-CH", "message": "non"}));
}

#[test]
fn grpcore_reads_the_details_a_grpcio_server_writes() {
    let env = Environment::new(1);
    let peer = python_peer_server("rich_status.py", &["server"]);
    let channel = ChannelBuilder::new(&env).connect(&format!("127.0.0.1:{}", peer.port)).unwrap();
    let err = channel.unary(&FAIL, &Vec::new(), CallOptions::new().timeout(Duration::from_secs(20))).wait().unwrap_err();
    let status = err.status();
    assert_eq!((status.code(), status.message()), (Code::InvalidArgument, "from python"));
    assert_eq!(
        status.error_details().unwrap(),
        vec![
            ErrorDetail::BadRequest(BadRequest {
                field_violations: vec![FieldViolation { field: "name".into(), description: "must not be empty".into() }],
            }),
            ErrorDetail::ErrorInfo(ErrorInfo {
                reason: "PY_REASON".into(),
                domain: "grpcio.test".into(),
                metadata: HashMap::from([("k".to_string(), "v".to_string())]),
            }),
            ErrorDetail::RetryInfo(RetryInfo { retry_delay: Some(Duration::new(2, 500)) }),
        ]
    );
}
