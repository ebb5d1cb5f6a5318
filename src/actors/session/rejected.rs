//! The actor for a socket whose handshake was refused: one `error` frame,
//! then a close code the client can tell from a network failure.

use crate::metrics::METRICS;
use crate::protocol;
use actix::prelude::*;
use actix_web_actors::ws;

/// A socket whose handshake carried no valid token: it gets one `error`
/// frame and a close code the client can tell from a network failure.
pub struct Rejected {
    pub code: u16,
    pub error_code: &'static str,
    pub message: String,
}

impl Actor for Rejected {
    type Context = ws::WebsocketContext<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        METRICS.frames_out.inc();
        ctx.text(protocol::error(self.error_code, &self.message));
        ctx.close(Some(ws::CloseReason {
            code: ws::CloseCode::from(self.code),
            description: Some(self.error_code.to_string()),
        }));
        ctx.stop();
    }
}

impl StreamHandler<Result<ws::Message, ws::ProtocolError>> for Rejected {
    fn handle(&mut self, _: Result<ws::Message, ws::ProtocolError>, _: &mut Self::Context) {}
}
