-- AlterTable
ALTER TABLE "round_metric" ADD COLUMN     "privacy_delta" DOUBLE PRECISION,
ADD COLUMN     "privacy_epsilon" DOUBLE PRECISION;
