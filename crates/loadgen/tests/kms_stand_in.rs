//! The worker's own KMS client against the sandbox's KMS stand-in: what one encrypts for a credential row
//! decrypts under the same row's context and under no other.

use clerk_audit::configuration::KmsSettings;
use clerk_audit::credentials::secret::ClerkSecretKey;
use clerk_audit::credentials::{Kms, StoredCredential};
use clerk_audit::error::{FailureReason, JobError};
use clerk_audit::intake::job::ProjectId;
use clerk_audit::retry::RetryPolicy;
use uuid::Uuid;

#[tokio::test]
async fn the_worker_kms_client_round_trips_and_a_foreign_context_is_refused() {
    for (name, value) in
        [("AWS_ACCESS_KEY_ID", "testing"), ("AWS_SECRET_ACCESS_KEY", "testing"), ("AWS_REGION", "us-east-1")]
    {
        // SAFETY: set before the first AWS client of this test binary reads the environment.
        unsafe { std::env::set_var(name, value) };
    }
    let stand_in = clerk_audit_sandbox::start_kms(std::net::Ipv4Addr::LOCALHOST.into(), 0).await.expect("starts");
    let settings = KmsSettings { endpoint_url: stand_in.endpoint_url(), region: "us-east-1".to_owned() };
    let kms = Kms::from_settings(&settings, RetryPolicy::immediate(3)).await;
    let key_id = stand_in.create_key();
    let project = ProjectId::parse("prj_kmstest1").expect("project id");
    let key_ref = Uuid::new_v4();
    let secret = ClerkSecretKey::from_plaintext(b"sk_test_StandInRoundTrip0000000000000000".to_vec()).expect("key");
    let ciphertext = kms.encrypt(&key_id, &project, key_ref, &secret).await.expect("encrypt");

    let credential = |project: &ProjectId, key_ref: Uuid| StoredCredential {
        key_ref,
        project_id: project.clone(),
        kms_key_id: key_id.clone(),
        ciphertext: ciphertext.clone(),
    };
    let decrypted = kms.decrypt(&credential(&project, key_ref)).await.expect("decrypts under its own context");
    assert_eq!(decrypted.fingerprint(), secret.fingerprint());

    let other_project = ProjectId::parse("prj_kmstest2").expect("project id");
    for wrong in [credential(&other_project, key_ref), credential(&project, Uuid::new_v4())] {
        match kms.decrypt(&wrong).await {
            Err(JobError::Permanent { reason: FailureReason::CredentialUndecryptable, .. }) => {}
            Err(other) => panic!("refused for the wrong reason: {other:?}"),
            Ok(_) => panic!("a ciphertext moved to another row must not decrypt"),
        }
    }

    // A throttling burst is retried by the worker's policy and then succeeds.
    stand_in.throttle_next(2);
    kms.decrypt(&credential(&project, key_ref)).await.expect("retried through the throttling");
    assert_eq!(stand_in.counts().throttled, 2);
    stand_in.shutdown().await;
}
