-- AlterTable
ALTER TABLE "round" ADD COLUMN     "statistics" JSONB,
ADD COLUMN     "statistics_mismatches" TEXT[] DEFAULT ARRAY[]::TEXT[],
ADD COLUMN     "statistics_sha256" TEXT;
