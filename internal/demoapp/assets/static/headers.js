// Lists the response headers of the page as the browser received them, to
// show which ones Moat added and which the backend sent. The page works
// without this script; it only fills in a table the page leaves hidden.
"use strict";

(function () {
  const box = document.getElementById("response-headers");
  const rows = document.getElementById("response-headers-body");
  const status = document.getElementById("response-headers-status");
  if (!box || !rows || !status || !window.fetch) {
    return;
  }

  // The backend sends none of these: when present, Moat added them.
  const added = {
    "content-security-policy": "Added by Moat: limits where scripts, styles and frames may come from.",
    "cross-origin-opener-policy": "Added by Moat: isolates this window from pages that open it.",
    "permissions-policy": "Added by Moat: camera, microphone, location and payment are off.",
    "referrer-policy": "Added by Moat: limits what the Referer header tells other sites.",
    "strict-transport-security": "Added by Moat: the browser will use only HTTPS for this site.",
    "x-content-type-options": "Added by Moat: the browser must not guess content types.",
    "x-frame-options": "Added by Moat: no other site may show this page in a frame.",
  };
  // The backend names its software on every response: Moat removes these.
  const banners = {
    "server": "demo-backend/1.0",
    "x-powered-by": "DemoFramework 3.2",
  };
  const leakNote = "The backend's banner: Moat removes it, so this answer did not pass through Moat.";

  function cell(tag, text, className) {
    const el = document.createElement(tag);
    if (tag === "th") {
      el.scope = "row";
    }
    if (className) {
      el.className = className;
    }
    el.textContent = text;
    return el;
  }

  fetch(window.location.href, { method: "HEAD", cache: "no-store", credentials: "same-origin" })
    .then(function (resp) {
      const list = [];
      resp.headers.forEach(function (value, name) {
        list.push([name.toLowerCase(), value]);
      });
      list.sort(function (a, b) {
        return a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0;
      });

      let leaked = 0;
      let hardened = 0;
      for (const [name, value] of list) {
        const tr = document.createElement("tr");
        const th = cell("th", "");
        const code = document.createElement("code");
        code.textContent = name;
        th.appendChild(code);
        tr.appendChild(th);
        tr.appendChild(cell("td", value));
        if (Object.hasOwn(added, name)) {
          hardened++;
          tr.appendChild(cell("td", added[name], "added"));
        } else if (Object.hasOwn(banners, name) && banners[name] === value) {
          leaked++;
          tr.appendChild(cell("td", leakNote, "leak"));
        } else {
          tr.appendChild(cell("td", ""));
        }
        rows.appendChild(tr);
      }
      box.hidden = false;

      if (leaked > 0) {
        status.textContent = "The backend's banners reached your browser: this page was not served through Moat.";
      } else if (hardened === 0) {
        status.textContent = "No security headers arrived: this page was not served through Moat.";
      } else {
        status.textContent = hardened + " security headers added by Moat; the backend's Server and X-Powered-By banners are gone.";
      }
    })
    .catch(function () {
      status.textContent = "The response headers could not be fetched. List them with curl -sI or in your browser's developer tools.";
    });
})();
