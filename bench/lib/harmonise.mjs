// The statistics round's intensity harmonisation, applied as a study with `statistics: { harmonise: true }` trains:
// each hospital's images moved from its own channel moments to the consortium's, and each held-out image with the
// moments of the hospital it was drawn from (in a study every site harmonises its own held-out images). The
// consortium's moments are computed here in the clear; a study gets the same totals through the encrypted sum.

/**
 * `statistics` is the site agent's statistics module; `holdoutSite[n]` the index in `siteSets` of the hospital
 * held-out image n was drawn from. Returns new sets and the moments used.
 */
export function harmoniseConsortium(statistics, siteSets, holdout, holdoutSite) {
  const { channels } = siteSets[0];
  const consortium = statistics.channelMoments(siteSets, channels);
  const sites = siteSets.map((set) => statistics.channelMoments([set], channels));
  const perImage = holdout.height * holdout.width * holdout.channels;
  const images = new Float32Array(holdout.images.length);
  for (let n = 0; n < holdout.count; n++) {
    const i = holdoutSite[n];
    if (!(Number.isInteger(i) && i >= 0 && i < siteSets.length)) throw new RangeError(`held-out image ${n} has no source hospital among the ${siteSets.length} sites`);
    const one = { ...holdout, images: holdout.images.subarray(n * perImage, (n + 1) * perImage), count: 1 };
    images.set(statistics.harmoniseChannels(one, sites[i], consortium).images, n * perImage);
  }
  return {
    siteSets: siteSets.map((set, i) => statistics.harmoniseChannels(set, sites[i], consortium)),
    holdout: { ...holdout, images },
    moments: { consortium, sites },
  };
}
