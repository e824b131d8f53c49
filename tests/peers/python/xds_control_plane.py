#!/usr/bin/env python3
"""A small xDS control plane for the tests: ADS, state of the world, v3 resources.

Serves Listener, RouteConfiguration, Cluster (EDS) and ClusterLoadAssignment resources
built from a JSON configuration, to any number of xDS clients (grpcore, grpcio, ...), and
pushes a new configuration to every connected client when one arrives on stdin.

Usage:
    xds_control_plane.py CONFIG_JSON

CONFIG_JSON (and every later configuration) is one JSON object on one line:

    {"services": {"echo": {"echo-a": 80, "echo-b": 20}},
     "clusters": {"echo-a": ["127.0.0.1:5001"], "echo-b": ["127.0.0.1:5002"]}}

  * "services": for each xDS target name (``xds:///echo`` -> ``echo``), either the
    clusters its single catch-all route sends calls to, with their weights (one cluster:
    a plain cluster route; more: weighted clusters), or an object
      {"routes": [ROUTE, ...], "fault": FAULT}
    where ROUTE is {"split": {cluster: weight, ...}, "prefix": "/pkg.Svc/" (default ""),
    "header": [name, exact value], "timeout_ms": n (max_stream_duration),
    "retry": {"on": "unavailable,...", "num_retries": n}, "string_match": true} (all but
    split optional; the first route that matches wins; "string_match" writes the header
    matcher as a StringMatcher, which gRPC 1.51 NACKs: a way to make a client reject a
    RouteConfiguration), and FAULT (optional: an HTTPFault filter before the
    router) is {"abort_percent": p, "abort_code": grpc code (default 14),
    "delay_percent": p, "delay_ms": n}.
  * "clusters": each cluster's endpoints (``host:port``, or ``host:port draining`` for
    an endpoint whose health status is DRAINING), in one locality of weight 1, balanced
    round robin.
  * "server_listeners" (optional): {resource name: "host:port" or {"address":
    "host:port", "tls": instance}}: Listeners for xDS-enabled servers (the name as the
    server's bootstrap template makes it), each with one filter chain routing every call
    to the server itself: plaintext, or with "tls" mutual TLS (client certificates
    required), identity and roots from the bootstrap's certificate provider `instance`.
  * "tls_clusters" (optional): {cluster: instance}: connections to that cluster use
    mutual TLS, identity and roots from the bootstrap's certificate provider `instance`
    (an UpstreamTlsContext on the Cluster).

Protocol with the parent process:
  * stdout carries exactly one line, ``PORT <n>``, once the server listens on
    127.0.0.1:<n> (plaintext).  NACKs and ignored configurations are reported on
    stderr; with GRPCORE_XDS_VERBOSE=1 every subscription and ACK too.
  * Each further line on stdin is a complete new configuration: the version goes up by
    one and every subscribed resource of every stream is sent again.  A line that is
    not valid configuration is reported on stderr and ignored.
  * The server stops at EOF on stdin, SIGTERM/SIGINT, or when its parent goes away.

Validated against grpcio's own xDS client (tests/peers/python/xds_client.py) before it
is used against grpcore, so a failure with grpcore points at grpcore.

Note: the package `xds-protos` provides the envoy modules; it imports a top-level module
`validate` (protoc-gen-validate), so no local file may be called validate.py here.
"""

import os

import peerlib  # noqa: F401  (records our parent's pid first)

import json
import queue
import signal
import stat
import sys
import threading
from concurrent import futures

import grpc
from google.protobuf import any_pb2, wrappers_pb2

from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.core.v3 import address_pb2, base_pb2, config_source_pb2, health_check_pb2
from envoy.config.endpoint.v3 import endpoint_components_pb2, endpoint_pb2
from envoy.config.listener.v3 import api_listener_pb2, listener_components_pb2, listener_pb2
from envoy.config.route.v3 import route_components_pb2, route_pb2
from envoy.extensions.filters.http.fault.v3 import fault_pb2
from envoy.extensions.filters.http.router.v3 import router_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import http_connection_manager_pb2 as hcm_pb2
from envoy.extensions.transport_sockets.tls.v3 import common_pb2, tls_pb2
from envoy.service.discovery.v3 import ads_pb2_grpc, discovery_pb2
from envoy.type.matcher.v3 import string_pb2
from envoy.type.v3 import percent_pb2

from peerlib import watch_parent

LISTENER = "type.googleapis.com/envoy.config.listener.v3.Listener"
ROUTE = "type.googleapis.com/envoy.config.route.v3.RouteConfiguration"
CLUSTER = "type.googleapis.com/envoy.config.cluster.v3.Cluster"
ENDPOINTS = "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment"


VERBOSE = bool(os.environ.get("GRPCORE_XDS_VERBOSE"))


def log(*args):
    print("xds_control_plane:", *args, file=sys.stderr, flush=True)


def trace(*args):
    """Routine traffic (subscriptions, ACKs): only with GRPCORE_XDS_VERBOSE=1."""
    if VERBOSE:
        log(*args)


def packed(message):
    a = any_pb2.Any()
    a.Pack(message)
    return a


def ads_source():
    return config_source_pb2.ConfigSource(
        ads=config_source_pb2.AggregatedConfigSource(),
        resource_api_version=config_source_pb2.V3,
    )


def route_name(service):
    return "route-" + service


def build_route(service, spec, clusters):
    split = spec.get("split")
    if not split:
        raise ValueError("a route of service %r sends calls to no cluster" % service)
    for cluster in split:
        if cluster not in clusters:
            raise ValueError("service %r names unknown cluster %r" % (service, cluster))
    if len(split) == 1:
        action = route_components_pb2.RouteAction(cluster=next(iter(split)))
    else:
        action = route_components_pb2.RouteAction(weighted_clusters=route_components_pb2.WeightedCluster(clusters=[
            route_components_pb2.WeightedCluster.ClusterWeight(name=name, weight=wrappers_pb2.UInt32Value(value=int(w)))
            for name, w in split.items()
        ]))
    if "timeout_ms" in spec:
        action.max_stream_duration.max_stream_duration.FromMilliseconds(int(spec["timeout_ms"]))
    if "retry" in spec:
        retry = spec["retry"]
        action.retry_policy.retry_on = retry.get("on", "unavailable")
        action.retry_policy.num_retries.value = int(retry.get("num_retries", 1))
    match = route_components_pb2.RouteMatch(prefix=spec.get("prefix", ""))
    if "header" in spec:
        name, value = spec["header"]
        if spec.get("string_match"):
            # Valid v3, newer than the 1.51 core, which NACKs the RouteConfiguration.
            match.headers.append(route_components_pb2.HeaderMatcher(
                name=name, string_match=string_pb2.StringMatcher(exact=value)))
        else:
            # exact_match (deprecated in v3): the 1.51 core NACKs string_match.
            match.headers.append(route_components_pb2.HeaderMatcher(name=name, exact_match=value))
    return route_components_pb2.Route(match=match, route=action)


def fault_filter(fault):
    """HTTPFault: abort abort_percent % of calls with gRPC status abort_code, delay
    delay_percent % by delay_ms."""
    f = fault_pb2.HTTPFault()
    if fault.get("abort_percent"):
        f.abort.grpc_status = int(fault.get("abort_code", 14))
        f.abort.percentage.numerator = int(fault["abort_percent"])
        f.abort.percentage.denominator = percent_pb2.FractionalPercent.HUNDRED
    if fault.get("delay_percent"):
        f.delay.fixed_delay.FromMilliseconds(int(fault["delay_ms"]))
        f.delay.percentage.numerator = int(fault["delay_percent"])
        f.delay.percentage.denominator = percent_pb2.FractionalPercent.HUNDRED
    return f


def upstream_tls(instance):
    """mTLS to a cluster: identity and roots both from the bootstrap's certificate
    provider instance `instance` (no SAN matchers: any certificate of those roots)."""
    context = tls_pb2.UpstreamTlsContext(common_tls_context=tls_pb2.CommonTlsContext(
        tls_certificate_provider_instance=common_pb2.CertificateProviderPluginInstance(instance_name=instance),
        validation_context=common_pb2.CertificateValidationContext(
            ca_certificate_provider_instance=common_pb2.CertificateProviderPluginInstance(instance_name=instance)),
    ))
    return base_pb2.TransportSocket(name="envoy.transport_sockets.tls", typed_config=packed(context))


def server_listener(name, hostport, tls=None):
    """The Listener an xDS-enabled server asks for: its address, one filter chain whose
    HttpConnectionManager routes every call to the server itself (NonForwardingAction),
    with the router last; plaintext, or with tls (a certificate provider instance) TLS
    requiring client certificates, identity and roots from that instance."""
    host, _, port = hostport.rpartition(":")
    manager = hcm_pb2.HttpConnectionManager(
        route_config=route_pb2.RouteConfiguration(
            name="server-route",
            virtual_hosts=[route_components_pb2.VirtualHost(
                name="server-vh", domains=["*"],
                routes=[route_components_pb2.Route(
                    match=route_components_pb2.RouteMatch(prefix=""),
                    non_forwarding_action=route_components_pb2.NonForwardingAction())],
            )],
        ),
        http_filters=[hcm_pb2.HttpFilter(name="router", typed_config=packed(router_pb2.Router()))],
    )
    return listener_pb2.Listener(
        name=name,
        address=address_pb2.Address(socket_address=address_pb2.SocketAddress(address=host, port_value=int(port))),
        filter_chains=[listener_components_pb2.FilterChain(
            filters=[listener_components_pb2.Filter(name="hcm", typed_config=packed(manager))],
            transport_socket=downstream_tls(tls) if tls else None)],
    )


def downstream_tls(instance):
    context = tls_pb2.DownstreamTlsContext(
        common_tls_context=tls_pb2.CommonTlsContext(
            tls_certificate_provider_instance=common_pb2.CertificateProviderPluginInstance(instance_name=instance),
            validation_context=common_pb2.CertificateValidationContext(
                ca_certificate_provider_instance=common_pb2.CertificateProviderPluginInstance(instance_name=instance)),
        ),
        require_client_certificate=wrappers_pb2.BoolValue(value=True),
    )
    return base_pb2.TransportSocket(name="envoy.transport_sockets.tls", typed_config=packed(context))


def build_resources(config):
    """{type_url: {name: Any}} for a configuration; raises ValueError when malformed."""
    services = config.get("services")
    clusters = config.get("clusters")
    if not isinstance(services, dict) or not isinstance(clusters, dict):
        raise ValueError('the configuration needs "services" and "clusters" objects')
    out = {LISTENER: {}, ROUTE: {}, CLUSTER: {}, ENDPOINTS: {}}
    for service, spec in services.items():
        if "routes" not in spec:
            spec = {"routes": [{"split": spec}]}
        http_filters = []
        fault = spec.get("fault")
        if fault:
            http_filters.append(hcm_pb2.HttpFilter(name="envoy.fault", typed_config=packed(fault_filter(fault))))
        # The router must be the last HTTP filter, or the client NACKs the Listener.
        http_filters.append(hcm_pb2.HttpFilter(name="router", typed_config=packed(router_pb2.Router())))
        manager = hcm_pb2.HttpConnectionManager(
            rds=hcm_pb2.Rds(config_source=ads_source(), route_config_name=route_name(service)),
            http_filters=http_filters,
        )
        out[LISTENER][service] = listener_pb2.Listener(
            name=service, api_listener=api_listener_pb2.ApiListener(api_listener=packed(manager)))
        out[ROUTE][route_name(service)] = route_pb2.RouteConfiguration(
            name=route_name(service),
            virtual_hosts=[route_components_pb2.VirtualHost(
                name="vh-" + service, domains=["*"],
                routes=[build_route(service, r, clusters) for r in spec["routes"]],
            )],
        )
    for name, spec in config.get("server_listeners", {}).items():
        if isinstance(spec, str):
            spec = {"address": spec}
        out[LISTENER][name] = server_listener(name, spec["address"], spec.get("tls"))
    tls = config.get("tls_clusters", {})
    for cluster, endpoints in clusters.items():
        out[CLUSTER][cluster] = cluster_pb2.Cluster(
            name=cluster,
            type=cluster_pb2.Cluster.EDS,
            eds_cluster_config=cluster_pb2.Cluster.EdsClusterConfig(eds_config=ads_source(), service_name=cluster),
            lb_policy=cluster_pb2.Cluster.ROUND_ROBIN,
        )
        if cluster in tls:
            out[CLUSTER][cluster].transport_socket.CopyFrom(upstream_tls(tls[cluster]))
        lb_endpoints = []
        for spec in endpoints:
            hostport, _, health = spec.partition(" ")
            if health not in ("", "draining"):
                raise ValueError("endpoint %r: the only state after the address is 'draining'" % spec)
            host, _, port = hostport.rpartition(":")
            lb_endpoints.append(endpoint_components_pb2.LbEndpoint(
                endpoint=endpoint_components_pb2.Endpoint(address=address_pb2.Address(
                    socket_address=address_pb2.SocketAddress(address=host, port_value=int(port)))),
                health_status=health_check_pb2.DRAINING if health else health_check_pb2.HEALTHY,
            ))
        out[ENDPOINTS][cluster] = endpoint_pb2.ClusterLoadAssignment(
            cluster_name=cluster,
            endpoints=[endpoint_components_pb2.LocalityLbEndpoints(
                locality=base_pb2.Locality(region="test", zone="a"),
                load_balancing_weight=wrappers_pb2.UInt32Value(value=1),
                lb_endpoints=lb_endpoints,
            )],
        )
    return {t: {n: packed(m) for n, m in rs.items()} for t, rs in out.items()}


class State:
    """The current resources and version, and the streams to tell when they change."""

    def __init__(self, config):
        self.lock = threading.Lock()
        self.version = 1
        self.resources = build_resources(config)
        self.streams = set()

    def replace(self, config):
        resources = build_resources(config)
        with self.lock:
            self.version += 1
            self.resources = resources
            streams = list(self.streams)
            version = self.version
        trace("configuration version", version)
        for s in streams:
            s.push_all()


class Stream:
    """One ADS stream: what the client subscribed to, and the responses to send it."""

    def __init__(self, state, peer):
        self.state = state
        self.peer = peer
        self.lock = threading.Lock()
        self.subscribed = {}  # type_url -> list of names
        self.nonce = 0
        self.out = queue.Queue()

    def response(self, type_url):
        """Queues the current resources of type_url the client asked for."""
        with self.state.lock:
            version = self.state.version
            available = self.state.resources.get(type_url, {})
        with self.lock:
            names = self.subscribed.get(type_url)
            if names is None:
                return
            self.nonce += 1
            nonce = str(self.nonce)
        chosen = [available[n] for n in (names or available.keys()) if n in available]
        self.out.put(discovery_pb2.DiscoveryResponse(
            version_info=str(version), type_url=type_url, nonce=nonce, resources=chosen))

    def push_all(self):
        with self.lock:
            types = list(self.subscribed)
        for t in types:
            self.response(t)

    def handle(self, request):
        t = request.type_url
        if request.HasField("error_detail"):
            log("NACK from", self.peer, t, "version", request.version_info, ":", request.error_detail.message)
        elif request.response_nonce:
            trace("ACK from", self.peer, t, "version", request.version_info)
        names = sorted(request.resource_names)
        with self.lock:
            changed = self.subscribed.get(t) != names
            self.subscribed[t] = names
        if changed or not request.response_nonce:
            trace("subscribe", self.peer, t, names)
            self.response(t)


class Ads(ads_pb2_grpc.AggregatedDiscoveryServiceServicer):
    def __init__(self, state):
        self.state = state

    def StreamAggregatedResources(self, request_iterator, context):
        stream = Stream(self.state, context.peer())
        with self.state.lock:
            self.state.streams.add(stream)
        done = object()

        def read():
            try:
                for request in request_iterator:
                    stream.handle(request)
            except Exception as e:  # the client went away
                trace("stream from", stream.peer, "ended:", e)
            stream.out.put(done)

        threading.Thread(target=read, daemon=True).start()
        try:
            while context.is_active():
                try:
                    item = stream.out.get(timeout=0.5)
                except queue.Empty:
                    continue
                if item is done:
                    break
                yield item
        finally:
            with self.state.lock:
                self.state.streams.discard(stream)


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    state = State(json.loads(sys.argv[1]))
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=32))
    ads_pb2_grpc.add_AggregatedDiscoveryServiceServicer_to_server(Ads(state), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    watch_parent(stop)

    def read_configs():
        for line in sys.stdin:
            line = line.strip()
            if not line:
                continue
            try:
                state.replace(json.loads(line))
            except (ValueError, TypeError) as e:
                log("ignored configuration:", e)
        stop.set()

    try:
        mode = os.fstat(sys.stdin.fileno()).st_mode
    except (AttributeError, OSError, ValueError):
        mode = 0
    if stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode) or os.isatty(0):
        threading.Thread(target=read_configs, daemon=True).start()
    # else (e.g. /dev/null): no configurations to read, and EOF would mean "stop now".
    print("PORT %d" % port, flush=True)
    stop.wait()
    server.stop(0.5).wait()


if __name__ == "__main__":
    main()
