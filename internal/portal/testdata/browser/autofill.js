// Test driver: stands in for the authenticator when webauthn.js starts a
// conditional (autofill) request on page load, and reports whether the
// browser offers conditional mediation at all.
const root = document.documentElement;
const text = (s) => new TextEncoder().encode(s).buffer;

navigator.credentials.get = async (opts) => {
  if (opts.mediation !== "conditional" || !(opts.signal instanceof AbortSignal)) {
    throw new Error("expected a conditional request with an abort signal");
  }
  const pk = opts.publicKey;
  return {
    id: "Y3JlZC0x",
    rawId: text("cred-1"),
    type: "public-key",
    getClientExtensionResults: () => ({}),
    response: {
      clientDataJSON: pk.challenge,
      authenticatorData: text("auth"),
      signature: pk.allowCredentials[0].id,
      userHandle: text("user-1"),
    },
  };
};

PublicKeyCredential.isConditionalMediationAvailable().then((ok) => {
  root.dataset.conditional = ok ? "yes" : "no";
});
