/* Rose Ash cart: small enhancements on top of htmx. Every page works without them.
 *
 * - in-place changes are announced through the page's live regions, and the focus
 *   goes to the message when the button that had it was swapped away;
 * - Checkout first saves quantities typed but not yet saved (in place, so the shopper
 *   goes on to pay at once; without JavaScript the server saves them and shows the cart
 *   again), and Update or Enter in a quantity box saves in place too;
 * - a change htmx cannot show (an error answer) falls back to a plain form post;
 * - the return page announces the payment's outcome when its polling sees it.
 */
(function () {
  "use strict";

  document.documentElement.classList.add("js");

  var inFlight = 0;
  var pendingCheckout = null; // id of the checkout button pressed while changes were saving
  var handled = null; // the last request whose swap was dealt with
  var sendAsIs = false; // the cart form is being sent natively, on purpose

  function announce(text, urgent) {
    var region = document.getElementById(urgent ? "live-alert" : "live-status");
    if (!region || !text) {
      return;
    }
    region.textContent = "";
    // A fresh text a moment later is what screen readers reliably pick up.
    window.setTimeout(function () {
      region.textContent = text;
    }, 50);
  }

  function messageText(element) {
    var paragraph = element.matches("p") ? element : element.querySelector("p");
    return (paragraph || element).textContent.replace(/\s+/g, " ").trim();
  }

  function pageMessages() {
    var main = document.getElementById("main") || document.body;
    return Array.prototype.slice.call(main.querySelectorAll("[data-message]"));
  }

  function focusLost() {
    var active = document.activeElement;
    return !active || active === document.body || !document.body.contains(active);
  }

  function tellMessages(moveFocus) {
    var messages = pageMessages();
    if (!messages.length) {
      return;
    }
    var errors = messages.filter(function (m) {
      return m.getAttribute("data-message") === "error";
    });
    announce(messages.map(messageText).join(" "), errors.length > 0);
    if (moveFocus && focusLost()) {
      (errors[0] || messages[0]).focus();
    }
  }

  function dirtyQuantities() {
    var inputs = document.querySelectorAll("#cart input[data-quantity]");
    return Array.prototype.filter.call(inputs, function (input) {
      return input.value !== input.defaultValue;
    });
  }

  // A box belongs to the cart form (form="cart-form"); its line's own form saves it alone.
  function saveQuantities(inputs) {
    inputs.forEach(function (input) {
      var lineForm = input.closest("form");
      if (lineForm) {
        window.htmx.trigger(lineForm, "submit");
      }
    });
  }

  // Send the cart form natively with this button, past the handler below.
  function sendCartForm(button) {
    sendAsIs = true;
    try {
      button.form.requestSubmit(button);
    } finally {
      sendAsIs = false;
    }
  }

  function resumeCheckout(force) {
    if (!pendingCheckout || (!force && (inFlight > 0 || dirtyQuantities().length))) {
      return;
    }
    if (!force && document.querySelector('#cart [data-message="error"]')) {
      // A quantity was refused: the shopper reads why beside its line and checks the
      // cart before paying, as without JavaScript.
      pendingCheckout = null;
      var note = document.getElementById("checkout-pending");
      if (note) {
        note.hidden = true;
      }
      return;
    }
    var button = document.getElementById(pendingCheckout);
    pendingCheckout = null;
    if (button && button.form) {
      sendCartForm(button);
    }
  }

  // The cart form: its Update buttons (and Enter in a box) save in place; its checkout
  // buttons never leave a typed quantity behind: save it, then go on to pay.
  document.addEventListener(
    "submit",
    function (event) {
      var form = event.target;
      if (sendAsIs || !form.matches || !form.matches("form[data-checkout]")) {
        return;
      }
      var submitter = event.submitter || form.querySelector("button[type=submit]");
      var dirty = dirtyQuantities();
      if (submitter && submitter.hasAttribute("data-update")) {
        event.preventDefault();
        var pressed = submitter.value && document.getElementById("qty-" + submitter.value);
        saveQuantities(dirty.length || !pressed ? dirty : [pressed]);
        return;
      }
      if (!dirty.length && inFlight === 0) {
        return;
      }
      event.preventDefault();
      pendingCheckout = submitter ? submitter.id : null;
      var note = document.getElementById("checkout-pending");
      if (note) {
        note.hidden = false;
      }
      announce("Saving your quantity changes first…", false);
      saveQuantities(dirty);
      // Never strand the shopper: after a while send the form as it is; the server saves
      // the typed quantities first and shows the cart again if they changed it.
      window.setTimeout(function () {
        if (pendingCheckout) {
          inFlight = 0;
          resumeCheckout(true);
        }
      }, 8000);
    },
    true
  );

  document.addEventListener("htmx:beforeRequest", function () {
    inFlight += 1;
  });

  document.addEventListener("htmx:afterRequest", function () {
    inFlight = Math.max(0, inFlight - 1);
  });

  document.addEventListener("htmx:afterSettle", function (event) {
    var xhr = event.detail && event.detail.xhr;
    if (xhr && xhr === handled) {
      return; // out-of-band parts of the same answer settle one by one
    }
    handled = xhr;
    window.setTimeout(function () {
      var state = document.getElementById("payment-state");
      if (state && state.getAttribute("data-status") !== "pending") {
        var heading = state.querySelector("h1");
        if (heading) {
          announce(heading.textContent.trim(), false);
          heading.focus();
        }
        return;
      }
      if (document.getElementById("cart")) {
        tellMessages(true);
        resumeCheckout();
      }
    }, 0);
  });

  // An answer htmx will not swap (an error page): show it the plain way. A quantity box
  // is sent by its Update button, with the cart form it belongs to.
  function fallBack(event) {
    var element = event.detail && event.detail.elt;
    var form = element && (element.matches("form") ? element : element.closest("form"));
    pendingCheckout = null;
    var update = form && form.querySelector("button[data-update]");
    if (update && update.form) {
      sendCartForm(update);
    } else if (form && (form.method || "").toLowerCase() === "post") {
      form.submit();
    }
  }
  document.addEventListener("htmx:responseError", fallBack);
  document.addEventListener("htmx:sendError", fallBack);

  document.addEventListener("DOMContentLoaded", function () {
    var target = window.location.hash ? document.getElementById(window.location.hash.slice(1)) : null;
    if (target && target.hasAttribute("data-message")) {
      target.focus();
      return; // the focus makes screen readers read it
    }
    tellMessages(false);
  });
})();
