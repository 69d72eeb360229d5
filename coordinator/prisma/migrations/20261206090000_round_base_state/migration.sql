-- AlterTable
ALTER TABLE "round" ADD COLUMN     "base_state_sha256" TEXT;
