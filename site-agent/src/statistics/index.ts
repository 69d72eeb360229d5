export { channelMoments, consortiumZScore, harmoniseChannels, modelFeatureColumns, siteStatisticsVector, UnsupportedStatisticError, type ChannelMoments } from './site-statistics.js';
