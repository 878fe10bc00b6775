// Moat login portal: passkeys (WebAuthn).
//
// Loaded as a module with <script type="module" src>, so it runs once the
// page is parsed, and never inline: the page's Content-Security-Policy
// allows script only from Moat's own origin.
//
// Passkey controls are forms marked data-moat-passkey="get" (sign in) or
// "create" (add a passkey), hidden by default together with anything marked
// data-moat-webauthn. When the browser supports WebAuthn this script shows
// them, hides anything marked data-moat-no-webauthn, and runs a ceremony when
// such a form is submitted:
//
//   1. POST the form's fields (except csrf) as JSON to the form's action,
//      with the CSRF token in the X-Moat-CSRF header; the reply holds the
//      options, whose binary fields are base64url strings.
//   2. Call navigator.credentials.create or get with them.
//   3. POST the credential, its binary fields as base64url, to the URL in
//      data-moat-finish, and go to the reply's "redirect", or show its
//      error in the form's aria-live region (data-moat-status).

const root = document.documentElement;
root.dataset.moatJs = "ready";

const supported =
  window.isSecureContext &&
  typeof window.PublicKeyCredential === "function" &&
  !!navigator.credentials;
root.dataset.moatWebauthn = supported ? "yes" : "no";

// --- base64url <-> ArrayBuffer ---------------------------------------------

function fromB64url(s) {
  if (typeof s !== "string") {
    throw new TypeError("expected a base64url string");
  }
  let b64 = s.replace(/-/g, "+").replace(/_/g, "/");
  while (b64.length % 4 !== 0) b64 += "=";
  const bin = atob(b64);
  const out = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
  return out.buffer;
}

function toB64url(buf) {
  if (buf == null) return undefined;
  const bytes = buf instanceof ArrayBuffer ? new Uint8Array(buf)
    : new Uint8Array(buf.buffer, buf.byteOffset, buf.byteLength);
  let bin = "";
  for (let i = 0; i < bytes.length; i++) bin += String.fromCharCode(bytes[i]);
  return btoa(bin).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

// --- options and credentials ---------------------------------------------

// decodeOptions turns the JSON options into what navigator.credentials
// takes. The server may send them bare or as {"publicKey": {...}}.
function decodeOptions(json) {
  const wrapped = json && typeof json === "object" && json.publicKey ? json : { publicKey: json };
  const pk = { ...wrapped.publicKey };
  pk.challenge = fromB64url(pk.challenge);
  if (pk.user) pk.user = { ...pk.user, id: fromB64url(pk.user.id) };
  for (const key of ["excludeCredentials", "allowCredentials"]) {
    if (Array.isArray(pk[key])) {
      pk[key] = pk[key].map((c) => ({ ...c, id: fromB64url(c.id) }));
    } else {
      delete pk[key];
    }
  }
  return pk;
}

// encodeCredential is PublicKeyCredential.toJSON(), written out so that it
// works in browsers that predate it.
function encodeCredential(cred) {
  const r = cred.response;
  const response = { clientDataJSON: toB64url(r.clientDataJSON) };
  if (r.attestationObject) {
    response.attestationObject = toB64url(r.attestationObject);
    if (typeof r.getTransports === "function") response.transports = r.getTransports();
  }
  if (r.authenticatorData) {
    response.authenticatorData = toB64url(r.authenticatorData);
    response.signature = toB64url(r.signature);
    if (r.userHandle && r.userHandle.byteLength > 0) response.userHandle = toB64url(r.userHandle);
  }
  let ext = {};
  try {
    ext = cred.getClientExtensionResults() || {};
  } catch (e) {
    ext = {};
  }
  return {
    id: cred.id,
    rawId: toB64url(cred.rawId),
    type: cred.type,
    authenticatorAttachment: cred.authenticatorAttachment || undefined,
    clientExtensionResults: ext,
    response,
  };
}

// --- talking to Moat --------------------------------------------------------

class PortalError extends Error {}

async function post(url, csrf, body, signal) {
  let res;
  try {
    res = await fetch(url, {
      signal,
      method: "POST",
      credentials: "same-origin",
      cache: "no-store",
      redirect: "error",
      headers: {
        "Content-Type": "application/json",
        "Accept": "application/json",
        "X-Moat-CSRF": csrf,
      },
      body: JSON.stringify(body),
    });
  } catch (e) {
    if (e && e.name === "AbortError") throw e;
    throw new PortalError("Moat could not be reached, or this page has expired. Reload the page and try again.");
  }
  let reply = null;
  try {
    reply = await res.json();
  } catch (e) {
    reply = null;
  }
  if (!res.ok) {
    const text = reply && (reply.error || reply.detail || reply.title);
    throw new PortalError(text || "Something went wrong (" + res.status + "). Reload the page and try again.");
  }
  if (reply === null || typeof reply !== "object") {
    throw new PortalError("Moat sent an answer this page does not understand. Reload the page and try again.");
  }
  return reply;
}

function fieldsOf(form) {
  const out = {};
  for (const [name, value] of new FormData(form)) {
    if (name !== "csrf" && typeof value === "string") out[name] = value;
  }
  return out;
}

function go(redirect) {
  const target = new URL(redirect || "/", window.location.href);
  if (target.origin !== window.location.origin) {
    throw new PortalError("Moat sent an unexpected address. Reload the page and try again.");
  }
  window.location.assign(target.href);
}

function describe(err, kind) {
  if (err instanceof PortalError) return err.message;
  switch (err && err.name) {
    case "NotAllowedError":
      return "The passkey request was cancelled or timed out. Try again, or use another way to sign in.";
    case "InvalidStateError":
      return kind === "create"
        ? "This device already holds a passkey for your account."
        : "This passkey cannot be used here. Try another one.";
    case "SecurityError":
      return "Your browser refused the passkey request for this address.";
    case "NotSupportedError":
      return "This device cannot make a passkey of the kind Moat asks for.";
    default:
      return "The passkey did not work. Try again, or use another way to sign in.";
  }
}

// --- ceremonies -------------------------------------------------------------

// autofill is the AbortController of a pending conditional request, which
// a click on the button cancels before starting its own.
let autofill = null;

async function ceremony(form, mediation, signal) {
  const kind = form.dataset.moatPasskey;
  const csrf = form.elements.namedItem("csrf").value;
  const fields = fieldsOf(form);
  const begun = await post(form.getAttribute("action"), csrf, fields, signal);
  const publicKey = decodeOptions(begun.options !== undefined ? begun.options : begun);
  let cred;
  if (kind === "create") {
    cred = await navigator.credentials.create({ publicKey });
  } else if (mediation === "conditional") {
    cred = await navigator.credentials.get({ publicKey, mediation, signal });
  } else {
    cred = await navigator.credentials.get({ publicKey });
  }
  if (!cred) throw new PortalError("No passkey was chosen.");
  const body = { ...fields, credential: encodeCredential(cred) };
  if (begun.ceremony) body.ceremony = begun.ceremony;
  const done = await post(form.dataset.moatFinish, csrf, body);
  if (done.error) throw new PortalError(done.error);
  go(done.redirect);
}

function setStatus(form, text, failed) {
  const status = form.querySelector("[data-moat-status]");
  if (!status) return;
  status.textContent = text;
  status.classList.toggle("failed", !!failed);
}

async function onSubmit(event) {
  const form = event.currentTarget;
  event.preventDefault();
  const button = form.querySelector("button[type=submit]");
  if (button && button.getAttribute("aria-busy") === "true") return;
  if (autofill) {
    autofill.abort();
    autofill = null;
  }
  if (button) button.setAttribute("aria-busy", "true");
  setStatus(form, form.dataset.moatPasskey === "create"
    ? "Follow your browser's steps to create the passkey."
    : "Follow your browser's steps to use your passkey.", false);
  try {
    await ceremony(form, "modal", undefined);
  } catch (err) {
    setStatus(form, describe(err, form.dataset.moatPasskey), true);
  } finally {
    if (button) button.removeAttribute("aria-busy");
  }
}

async function startAutofill(form) {
  const pkc = window.PublicKeyCredential;
  if (typeof pkc.isConditionalMediationAvailable !== "function") return;
  autofill = new AbortController();
  const signal = autofill.signal;
  try {
    if (!(await pkc.isConditionalMediationAvailable()) || signal.aborted) return;
    await ceremony(form, "conditional", signal);
  } catch (err) {
    // Aborted by a click on the button, or refused quietly: the user can
    // still use the button or the password form.
    if (err && err.name !== "AbortError") setStatus(form, describe(err, "get"), true);
  }
}

if (supported) {
  for (const el of document.querySelectorAll("[data-moat-webauthn]")) el.hidden = false;
  for (const el of document.querySelectorAll("[data-moat-no-webauthn]")) el.hidden = true;
  for (const form of document.querySelectorAll("form[data-moat-passkey]")) {
    form.addEventListener("submit", onSubmit);
    if (form.hasAttribute("data-moat-autofill")) startAutofill(form);
  }
}
