//! Hot reload: `control.model.load` requests (every worker hears them and answers with its
//! own [`ModelLoadReply`]), [`LoadModel`], and [`request_model_load`], the client side.

use super::{Predictor, lock};
use crate::actors::stage::service::FACT_MODEL;
use crate::bus::{Bus, headers};
use crate::model::{OnnxModel, error_chain};
use crate::wire::{self, ModelLoadReply, ModelLoadRequest, SCHEMA_VERSION};
use actix::prelude::*;
use futures::StreamExt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// Loads and checks another model directory, and switches to it when it fits.
#[derive(Debug, Clone, Message)]
#[rtype(result = "ModelLoadReply")]
pub struct LoadModel {
    /// The model directory.
    pub path: PathBuf,
}

impl Handler<LoadModel> for Predictor {
    type Result = ResponseActFuture<Self, ModelLoadReply>;

    fn handle(&mut self, request: LoadModel, _: &mut Self::Context) -> Self::Result {
        let options = self.options.clone();
        let model = Arc::clone(&self.model);
        let path = request.path;
        tracing::info!(worker = %self.worker_id, dir = %path.display(), "loading a model");
        let switch = async move {
            let dir = path.clone();
            let loaded = tokio::task::spawn_blocking(move || OnnxModel::load(&dir, &options))
                .await
                .map_err(|error| format!("model loading task failed: {error}"))?
                .map_err(|error| error_chain(&error))?;
            let label = loaded.metadata().label();
            tokio::task::spawn_blocking(move || {
                let old = std::mem::replace(&mut *lock(&model), loaded);
                drop(old);
            })
            .await
            .map_err(|error| format!("model swap task failed: {error}"))?;
            Ok::<_, String>((label, path))
        };
        Box::pin(switch.into_actor(self).map(|result, actor, _| match result {
            Ok((label, path)) => {
                actor.serving = label;
                actor.stage.facts().set(FACT_MODEL, &actor.serving);
                actor.extras.reloads.incr();
                tracing::info!(worker = %actor.worker_id, model = %actor.serving, dir = %path.display(), "model switched");
                actor.reply(true, None)
            }
            Err(error) => {
                actor.extras.reloads_refused.incr();
                tracing::warn!(worker = %actor.worker_id, model = %actor.serving, %error, "model refused: the old one keeps serving");
                actor.reply(false, Some(error))
            }
        }))
    }
}

/// Requests on `control.model.load`.
impl StreamHandler<async_nats::Message> for Predictor {
    fn handle(&mut self, message: async_nats::Message, ctx: &mut Self::Context) {
        let Some(reply_to) = message.reply.clone() else {
            tracing::warn!("model load request without a reply subject: ignored");
            return;
        };
        let client = self.bus.client().clone();
        match wire::decode::<ModelLoadRequest>(&message.payload) {
            Err(error) => {
                let reply = self.reply(false, Some(format!("bad request: {error}")));
                actix::spawn(send_reply(client, reply_to, reply));
            }
            Ok(request) => {
                let load = LoadModel {
                    path: PathBuf::from(request.path),
                };
                let reply = <Self as Handler<LoadModel>>::handle(self, load, ctx);
                ctx.spawn(reply.map(move |reply, _, _| {
                    actix::spawn(send_reply(client, reply_to, reply));
                }));
            }
        }
    }

    fn finished(&mut self, _: &mut Self::Context) {
        // The connection closed; jobs stop too. Keep the actor so counters stay readable.
        tracing::warn!(worker = %self.worker_id, "model control subscription ended");
    }
}

async fn send_reply(
    client: async_nats::Client,
    subject: async_nats::Subject,
    reply: ModelLoadReply,
) {
    let payload = wire::encode(&reply);
    if let Err(error) = client
        .publish_with_headers(subject, headers(), payload.into())
        .await
    {
        tracing::warn!(%error, "cannot send a model load reply");
    }
    let _ = client.flush().await;
}

/// Sends a model-load request to every predictor worker and collects their replies: waits up
/// to `first_reply` for the first, then until no other arrives for `quiet`.
///
/// # Errors
/// A reason in words when the request cannot be sent.
pub async fn request_model_load(
    bus: &Bus,
    path: &str,
    first_reply: Duration,
    quiet: Duration,
) -> Result<Vec<ModelLoadReply>, String> {
    let client = bus.client();
    let inbox = client.new_inbox();
    let mut replies = client
        .subscribe(inbox.clone())
        .await
        .map_err(|error| format!("subscribing to the reply inbox: {error}"))?;
    let request = ModelLoadRequest {
        v: SCHEMA_VERSION,
        path: path.to_string(),
    };
    client
        .publish_with_reply_and_headers(
            bus.subjects().control_model_load(),
            inbox,
            headers(),
            wire::encode(&request).into(),
        )
        .await
        .map_err(|error| format!("sending the request: {error}"))?;
    client
        .flush()
        .await
        .map_err(|error| format!("sending the request: {error}"))?;
    let mut collected = Vec::new();
    let mut wait = first_reply;
    while let Ok(Some(message)) = tokio::time::timeout(wait, replies.next()).await {
        match wire::decode::<ModelLoadReply>(&message.payload) {
            Ok(reply) => collected.push(reply),
            Err(error) => tracing::warn!(%error, "undecodable model load reply"),
        }
        wait = quiet;
    }
    Ok(collected)
}
