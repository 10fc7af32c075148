// Marks the footer once the script has loaded, so a reader can see that
// every asset of the page arrived.
document.querySelector("footer p").classList.add("js-ok");
