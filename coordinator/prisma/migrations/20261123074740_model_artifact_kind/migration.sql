-- CreateEnum
CREATE TYPE "model_artifact_kind" AS ENUM ('weights', 'encrypted_aggregate');

-- AlterTable
ALTER TABLE "model_version" ADD COLUMN     "kind" "model_artifact_kind" NOT NULL DEFAULT 'weights';
