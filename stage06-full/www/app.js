// Marks the footer once the script has loaded, so a reader can see that
// every asset of the page arrived.
document.querySelector("footer p").classList.add("js-ok");

// The curl examples name the address this page came from (the server may
// listen on another port than 8080); without the script they keep the
// default written in the page.
for (const host of document.querySelectorAll(".host")) {
  host.textContent = location.host;
}
