// The console's entry point: a router over the URL fragment (#/, #/sign-in,
// #/keys, #/key/<name>, #/devices) that mounts one view at a time in
// <main>. A view returns a function that stops what it started (a
// long-poll, a refresh timer) when another view takes its place.
import {clearSession, session} from './api.js';
import {aboutView, devicesView, keysView, keyView, signInView} from './views.js';

const main = document.getElementById('main');
let stopView = null;
let firstRoute = true;

function updateNav() {
  const current = session();
  for (const item of document.querySelectorAll('[data-signed-in]')) item.hidden = !current;
  for (const item of document.querySelectorAll('[data-signed-out]')) item.hidden = !!current;
  document.getElementById('who').textContent = current ? `Bucket ${current.bucket}` : '';
  const hash = location.hash || '#/';
  for (const link of document.querySelectorAll('#nav a')) {
    const target = link.getAttribute('href');
    const active = target === hash || (target === '#/keys' && hash.startsWith('#/key/'));
    if (active) link.setAttribute('aria-current', 'page');
    else link.removeAttribute('aria-current');
  }
}

function route() {
  if (stopView) stopView();
  stopView = null;
  const hash = location.hash || '#/';
  const current = session();
  let view;
  if (hash === '#/' || hash === '#') {
    view = () => aboutView(main, current);
  } else if (hash === '#/sign-in') {
    view = () => signInView(main, () => { location.hash = '#/keys'; });
  } else if (!current) {
    // Pages of a bucket without a session: sign in first.
    location.replace('#/sign-in');
    return;
  } else if (hash === '#/keys') {
    view = () => keysView(main, current);
  } else if (hash === '#/devices') {
    view = () => devicesView(main, current);
  } else if (hash.startsWith('#/key/')) {
    const key = decodeURIComponent(hash.slice('#/key/'.length));
    view = () => keyView(main, current, key);
  } else {
    location.replace('#/');
    return;
  }
  main.replaceChildren();
  document.getElementById('status').textContent = '';
  updateNav();
  stopView = view() || null;
  // Move focus to the new view's heading, so keyboard and screen reader
  // users start there (unless the view focused a field of its own; not on
  // the first load: the page starts at the top).
  if (!firstRoute && !main.contains(document.activeElement)) {
    const heading = main.querySelector('h1');
    if (heading) {
      heading.setAttribute('tabindex', '-1');
      heading.focus();
    }
  }
  firstRoute = false;
}

document.getElementById('sign-out').addEventListener('click', () => {
  clearSession();
  if (location.hash === '#/' || location.hash === '') route();
  else location.hash = '#/';
});
window.addEventListener('hashchange', route);
route();
