// Test driver: reports what the stylesheet did and any CSP violation seen
// after it loaded, as data attributes that --dump-dom shows.
const root = document.documentElement;
let violations = 0;
document.addEventListener("securitypolicyviolation", () => {
  violations++;
  root.dataset.probeViolations = String(violations);
});
root.dataset.probeViolations = "0";
const button = document.querySelector("button.primary");
if (button) {
  root.dataset.probeButtonBg = getComputedStyle(button).backgroundColor;
}
const hidden = document.querySelector(".vh");
root.dataset.probeVh = hidden ? getComputedStyle(hidden).position : "none";
