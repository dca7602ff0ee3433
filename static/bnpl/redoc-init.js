// Starts ReDoc on /redoc/. A file of its own so that the page runs no inline script; the
// styles ReDoc generates carry the nonce of the page's Content-Security-Policy, which this
// script's own tag holds.
"use strict";
(function () {
  const container = document.getElementById("redoc-container");
  Redoc.init(container.dataset.specUrl, { nonce: document.currentScript.nonce }, container);
})();
