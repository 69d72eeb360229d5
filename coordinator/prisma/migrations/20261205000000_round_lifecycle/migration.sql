-- AlterEnum
ALTER TYPE "study_status" ADD VALUE 'paused';

-- AlterTable
ALTER TABLE "study" ADD COLUMN     "dropped_sites" TEXT[] DEFAULT ARRAY[]::TEXT[];

-- AlterTable
ALTER TABLE "round" ADD COLUMN     "extensions" INTEGER NOT NULL DEFAULT 0;
