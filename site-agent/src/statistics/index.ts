export { channelMoments, consortiumZScore, harmoniseChannels, siteStatisticsVector, UnsupportedStatisticError, type ChannelMoments } from './site-statistics.js';
