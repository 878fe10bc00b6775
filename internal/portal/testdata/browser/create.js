// Test driver: stands in for the authenticator in
// navigator.credentials.create, records what webauthn.js passed it, and
// submits the add-a-passkey form with a name.
const root = document.documentElement;
const hex = (buf) => Array.from(new Uint8Array(buf), (b) => b.toString(16).padStart(2, "0")).join("");
const text = (s) => new TextEncoder().encode(s).buffer;

navigator.credentials.create = async (opts) => {
  const pk = opts.publicKey;
  root.dataset.seenChallenge = hex(pk.challenge);
  root.dataset.seenUserId = hex(pk.user.id);
  root.dataset.seenExclude = pk.excludeCredentials.map((c) => hex(c.id)).join(",");
  return {
    id: "bmV3LWNyZWQ",
    rawId: text("new-cred"),
    type: "public-key",
    authenticatorAttachment: "cross-platform",
    getClientExtensionResults: () => ({ credProps: { rk: true } }),
    response: {
      clientDataJSON: text('{"type":"webauthn.create"}'),
      attestationObject: new Uint8Array([0xa3, 0xfb, 0xff]).buffer,
      getTransports: () => ["usb", "nfc"],
    },
  };
};

const form = document.querySelector('form[data-moat-passkey="create"]');
form.elements.namedItem("name").value = "Blue key";
form.requestSubmit();
