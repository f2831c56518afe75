//! `temporal.api.testservice.v1.TestService`, served by the time-skipping test server only:
//! the lock counter of time skipping, sleeps in virtual time and the current virtual time.
//!
//! Semantics follow Temporal's Java test server: the counter starts at 1 (locked); an unlock
//! below zero fails; `Sleep`/`SleepUntil` wait for virtual time without unlocking;
//! `UnlockTimeSkippingWithSleep` unlocks, waits until virtual time has advanced by the
//! duration, and locks again before it answers (also when the caller goes away).

use crate::clock::{Clock, Target};
use crate::virtual_clock::VirtualClock;
use std::sync::Arc;
use sundial_engine::time::{duration_ms, invalid_duration, timestamp, timestamp_ms};
use sundial_proto::temporal::api::testservice::v1::{
    GetCurrentTimeResponse, LockTimeSkippingRequest, LockTimeSkippingResponse, SleepRequest,
    SleepResponse, SleepUntilRequest, UnlockTimeSkippingRequest, UnlockTimeSkippingResponse,
};
use sundial_proto::testservice::test_service_server;
use tonic::{Request, Response, Status};

type Reply<T> = Result<Response<T>, Status>;

pub struct TestService {
    clock: Arc<VirtualClock>,
}

impl TestService {
    pub fn new(clock: Arc<VirtualClock>) -> TestService {
        TestService { clock }
    }

    fn handle(&self) -> Clock {
        Clock::Virtual(self.clock.clone())
    }

    /// Waits until virtual time reaches `at_ms`, registered as a target so that skipping can
    /// jump there.
    async fn sleep_until_ms(&self, at_ms: i64) {
        let clock = self.handle();
        let mut target = clock.target();
        target.set(Some(at_ms));
        clock.wait_until(at_ms).await;
    }

    fn sleep_duration(request: &SleepRequest) -> Result<i64, Status> {
        if let Some(why) = invalid_duration(request.duration.as_ref()) {
            return Err(Status::invalid_argument(format!("duration: {why}")));
        }
        Ok(duration_ms(request.duration.as_ref()))
    }
}

/// Locks time skipping again when dropped, then forgets the sleeper's target (fields drop
/// after `drop` runs, so time never skips between the two).
struct Relock {
    clock: Arc<VirtualClock>,
    _target: Target,
}

impl Drop for Relock {
    fn drop(&mut self) {
        self.clock.lock();
    }
}

#[tonic::async_trait]
impl test_service_server::TestService for TestService {
    async fn lock_time_skipping(
        &self,
        _request: Request<LockTimeSkippingRequest>,
    ) -> Reply<LockTimeSkippingResponse> {
        self.clock.lock();
        Ok(Response::new(LockTimeSkippingResponse {}))
    }

    async fn unlock_time_skipping(
        &self,
        _request: Request<UnlockTimeSkippingRequest>,
    ) -> Reply<UnlockTimeSkippingResponse> {
        self.clock
            .unlock()
            .map_err(|e| Status::failed_precondition(e.to_string()))?;
        Ok(Response::new(UnlockTimeSkippingResponse {}))
    }

    async fn sleep(&self, request: Request<SleepRequest>) -> Reply<SleepResponse> {
        let ms = Self::sleep_duration(request.get_ref())?;
        self.sleep_until_ms(self.clock.now_ms().saturating_add(ms))
            .await;
        Ok(Response::new(SleepResponse {}))
    }

    async fn sleep_until(&self, request: Request<SleepUntilRequest>) -> Reply<SleepResponse> {
        let Some(at) = request.get_ref().timestamp.as_ref() else {
            return Err(Status::invalid_argument("timestamp is required"));
        };
        self.sleep_until_ms(timestamp_ms(at)).await;
        Ok(Response::new(SleepResponse {}))
    }

    async fn unlock_time_skipping_with_sleep(
        &self,
        request: Request<SleepRequest>,
    ) -> Reply<SleepResponse> {
        let ms = Self::sleep_duration(request.get_ref())?;
        let at = self.clock.now_ms().saturating_add(ms);
        let clock = self.handle();
        let mut target = clock.target();
        target.set(Some(at));
        self.clock
            .unlock()
            .map_err(|e| Status::failed_precondition(e.to_string()))?;
        let relock = Relock {
            clock: self.clock.clone(),
            _target: target,
        };
        clock.wait_until(at).await;
        drop(relock);
        Ok(Response::new(SleepResponse {}))
    }

    async fn get_current_time(&self, _request: Request<()>) -> Reply<GetCurrentTimeResponse> {
        Ok(Response::new(GetCurrentTimeResponse {
            time: Some(timestamp(self.clock.now_ms())),
        }))
    }
}
