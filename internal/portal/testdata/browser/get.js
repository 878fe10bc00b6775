// Test driver: stands in for the authenticator in navigator.credentials.get
// and submits the passkey login form. It echoes the challenge as
// clientDataJSON and the allowed credential id as the signature, so that
// the server sees what webauthn.js decoded.
const bytes = (...b) => new Uint8Array(b).buffer;
const text = (s) => new TextEncoder().encode(s).buffer;

navigator.credentials.get = async (opts) => {
  const pk = opts.publicKey;
  return {
    id: "Y3JlZC0x",
    rawId: text("cred-1"),
    type: "public-key",
    authenticatorAttachment: "platform",
    getClientExtensionResults: () => ({}),
    response: {
      clientDataJSON: pk.challenge,
      authenticatorData: bytes(0xfb, 0xff, 0xbf, 0x00, 0x01),
      signature: pk.allowCredentials[0].id,
      userHandle: text("user-1"),
    },
  };
};

document.querySelector('form[data-moat-passkey="get"]').requestSubmit();
