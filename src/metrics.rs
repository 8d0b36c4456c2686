//! Prometheus metrics (`GET /metrics`): webhooks received by result, processing latency,
//! queue depths and outbound sends by result. Labels carry channels and outcomes, never ids or
//! personal data.

use std::sync::Arc;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ChannelResult {
    pub channel: String,
    pub result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct IntentLabels {
    pub source: String,
    pub outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ChannelLabel {
    pub channel: String,
}

/// Every metric Parley exports.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    /// Webhook deliveries by channel and result (`accepted`, `duplicate`, `bad_signature`, ...).
    pub webhooks: Family<ChannelResult, Counter>,
    /// Inbound messages recorded (first time) and duplicates dropped, by channel.
    pub inbound_messages: Family<ChannelResult, Counter>,
    /// From recording an inbound message to committing its reply, in seconds.
    pub processing_seconds: Family<ChannelLabel, Histogram>,
    /// Outbound delivery attempts by channel and result (`sent`, `retry`, `failed`).
    pub outbound_sends: Family<ChannelResult, Counter>,
    /// Sends that may have reached the provider twice (a sender died during the call).
    pub outbound_uncertain: Counter,
    /// Conversations announced to the work queue and not yet taken.
    pub queue_depth: Gauge,
    /// Outbound messages waiting in the outbox.
    pub outbox_depth: Gauge,
    /// Intent detections by source (`offline`, `llm`, `offline_fallback`).
    pub intent_detections: Family<IntentLabels, Counter>,
    /// Handoffs opened, by reason.
    pub handoffs_opened: Family<ReasonLabel, Counter>,
    /// Handoffs escalated after their SLA passed unclaimed.
    pub handoffs_escalated: Counter,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, prometheus_client::encoding::EncodeLabelSet)]
pub struct ReasonLabel {
    pub reason: String,
}

impl Metrics {
    pub fn new() -> Arc<Self> {
        let mut registry = Registry::with_prefix("parley");
        let webhooks = Family::<ChannelResult, Counter>::default();
        registry.register(
            "webhooks_received",
            "Webhook deliveries by channel and result",
            webhooks.clone(),
        );
        let inbound_messages = Family::<ChannelResult, Counter>::default();
        registry.register(
            "inbound_messages",
            "Inbound messages by channel and result (recorded or duplicate)",
            inbound_messages.clone(),
        );
        let processing_seconds = Family::<ChannelLabel, Histogram>::new_with_constructor(|| {
            Histogram::new([
                0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
            ])
        });
        registry.register(
            "processing_seconds",
            "Time from recording an inbound message to committing its reply",
            processing_seconds.clone(),
        );
        let outbound_sends = Family::<ChannelResult, Counter>::default();
        registry.register(
            "outbound_sends",
            "Outbound delivery attempts by channel and result",
            outbound_sends.clone(),
        );
        let outbound_uncertain = Counter::default();
        registry.register(
            "outbound_uncertain",
            "Outbound messages retried after a sender died during the provider call (possible duplicates)",
            outbound_uncertain.clone(),
        );
        let queue_depth = Gauge::default();
        registry.register(
            "queue_depth",
            "Conversations announced to the work queue and not yet taken",
            queue_depth.clone(),
        );
        let outbox_depth = Gauge::default();
        registry.register(
            "outbox_depth",
            "Outbound messages waiting for delivery",
            outbox_depth.clone(),
        );
        let intent_detections = Family::<IntentLabels, Counter>::default();
        registry.register(
            "intent_detections",
            "Intent detections by source and outcome",
            intent_detections.clone(),
        );
        let handoffs_opened = Family::<ReasonLabel, Counter>::default();
        registry.register(
            "handoffs_opened",
            "Conversations handed to staff, by reason",
            handoffs_opened.clone(),
        );
        let handoffs_escalated = Counter::default();
        registry.register(
            "handoffs_escalated",
            "Handoffs escalated after their SLA passed unclaimed",
            handoffs_escalated.clone(),
        );
        Arc::new(Self {
            registry,
            webhooks,
            inbound_messages,
            processing_seconds,
            outbound_sends,
            outbound_uncertain,
            queue_depth,
            outbox_depth,
            intent_detections,
            handoffs_opened,
            handoffs_escalated,
        })
    }

    pub fn handoff_opened(&self, reason: &str) {
        self.handoffs_opened
            .get_or_create(&ReasonLabel {
                reason: reason.to_owned(),
            })
            .inc();
    }

    pub fn handoff_escalated(&self) {
        self.handoffs_escalated.inc();
    }

    pub fn webhook(&self, channel: &str, result: &str) {
        self.webhooks
            .get_or_create(&ChannelResult {
                channel: channel.to_owned(),
                result: result.to_owned(),
            })
            .inc();
    }

    pub fn inbound(&self, channel: &str, result: &str, count: u64) {
        if count > 0 {
            self.inbound_messages
                .get_or_create(&ChannelResult {
                    channel: channel.to_owned(),
                    result: result.to_owned(),
                })
                .inc_by(count);
        }
    }

    pub fn send(&self, channel: &str, result: &str) {
        self.outbound_sends
            .get_or_create(&ChannelResult {
                channel: channel.to_owned(),
                result: result.to_owned(),
            })
            .inc();
    }

    pub fn processed(&self, channel: &str, seconds: f64) {
        self.processing_seconds
            .get_or_create(&ChannelLabel {
                channel: channel.to_owned(),
            })
            .observe(seconds);
    }

    pub fn intent(&self, source: &str, outcome: &str) {
        self.intent_detections
            .get_or_create(&IntentLabels {
                source: source.to_owned(),
                outcome: outcome.to_owned(),
            })
            .inc();
    }

    /// The text exposition format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = encode(&mut out, &self.registry);
        out
    }
}
